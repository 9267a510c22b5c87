"""Operations CLI: every cloud step of the journey, from an empty account to an answered case, as one command.

``python -m ops --help`` (or the make targets: ``make bootstrap|weights|data|train|approve|ask|status|destroy|cost
ENV=...``). Every name comes from the environment's settings (``config/<env>.yaml``) and its deployed stacks'
CloudFormation outputs (``ops/outputs.py``); the user types none. See docs/runbook.md.
"""
