"""Image models and the server: until the routes take images (issue 19, item 2), an image model is refused at
start with a sentence saying what it takes, never served to answer text with a 500."""

import pytest

from headscope.models.digits import DigitsModel
from headscope.server.app import create_app
from headscope.server.settings import Settings


def test_the_server_refuses_to_serve_an_image_model():
    with pytest.raises(ValueError, match="'digits' takes an image, not a text"):
        create_app(Settings(), models={"digits": DigitsModel.load()})
