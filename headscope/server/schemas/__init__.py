"""Pydantic schemas of every request and answer, one file per route file, so that /docs is the API's true manual."""
