"""``python -m app`` is the ``edgeopt`` command."""

from app.cli import main

main()
