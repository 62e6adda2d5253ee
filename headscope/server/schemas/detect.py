"""POST /api/detect: every head scored against the standard ideal patterns on seeded synthetic inputs."""

from pydantic import BaseModel, Field

from headscope.analyses.detect import DEFAULT_NATURAL, DEFAULT_SEED, DEFAULT_SEQUENCES, DEFAULT_WORDS
from headscope.server.schemas.common import Request


class DetectRequest(Request):
    model: str | None = Field(None, description="A model name from GET /api/models; omitted: the server's default.")
    seed: int = Field(DEFAULT_SEED, ge=0, le=2**32 - 1, description="Seeds the random word sequences and the choice "
                      "of natural sentences; the same seed gives the same inputs and scores.")
    sequences: int = Field(DEFAULT_SEQUENCES, ge=1, description="Random word sequences written twice, at most "
                           "`detect_max_sequences` (GET /api/models limits).")
    words: int = Field(DEFAULT_WORDS, ge=2, le=64, description="Words per copy (fewer where the model takes fewer "
                       "tokens).")
    natural: int = Field(DEFAULT_NATURAL, ge=1, le=48, description="Natural sentences for previous_token.")


class FoundHead(BaseModel):
    name: str
    layer: int
    head: int
    score: float


class DetectResponse(BaseModel):
    model: str
    seed: int = Field(description="The seed the inputs were drawn with.")
    kinds: list[str] = Field(description="The attention kinds scored: those whose rows and columns are the tokens.")
    dims: list[str] = Field(description="The axes of each score table: [\"layer\", \"head\"].")
    detectors: dict[str, str] = Field(description="Detector name -> what its score measures.")
    threshold: float = Field(description="The score from which a head is named in `found`.")
    inputs: dict[str, list[str]] = Field(description="`repeated`: the random word sequences written twice; "
                                         "`natural`: the sentences; rerun them to check.")
    used: dict[str, int] = Field(description="How many of each were scored (a repeat whose second copy tokenizes "
                                 "differently is left out).")
    scores: dict[str, dict[str, list[list[float]] | None]] = Field(
        description="kind -> detector -> [layer][head] mean weight on the ideal pattern's cells, in [0, 1].")
    found: dict[str, dict[str, list[FoundHead]]] = Field(description="kind -> detector -> heads scoring at least "
                                                         "`threshold`, best first.")
