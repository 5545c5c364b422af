import sys
from pathlib import Path

# tinyworld / serving are test helpers next to these tests (imported by name).
sys.path.insert(0, str(Path(__file__).parent))
