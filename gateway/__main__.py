"""``python -m gateway`` works like the ``llm-gateway`` command."""

from gateway.cli import main

if __name__ == "__main__":
    main()
