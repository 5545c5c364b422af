import sys
from pathlib import Path

# the engine tests' helpers (tiny model, in-thread server) serve the client tests too
sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))
