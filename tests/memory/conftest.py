import sys
from pathlib import Path

# the memory tests share helpers in memtest.py (pytest runs with --import-mode=importlib)
sys.path.insert(0, str(Path(__file__).parent))
