"""The command line itself: its top-level help is instant (it imports neither torch nor MLflow), and every
command still has all its options when asked for its own help."""
import subprocess
import sys

import pytest

from kdtrack.cli import COMMANDS, build_parser

HEAVY = ("torch", "mlflow", "pandas", "matplotlib", "sklearn")


def imported_by(argv: list[str]) -> list[str]:
    """The heavy modules a fresh interpreter has imported after `kdtrack ARGV` printed its help."""
    code = ("import sys\nfrom kdtrack.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(sorted(name for name in %r if name in sys.modules))" % (argv, HEAVY))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return eval(result.stdout.strip().splitlines()[-1])


def test_the_top_level_help_imports_nothing_heavy():
    assert imported_by(["--help"]) == []


@pytest.mark.parametrize("name", ["make-data", "compare", "register"])
def test_a_commands_help_builds_only_that_command(name):
    """compare and register need neither MLflow nor torch for their options (the accuracy metrics' names are
    in kdtrack/metrics.py)."""
    assert imported_by([name, "--help"]) == []


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_built_alone_has_the_options_it_has_among_all(name):
    def options(parser) -> set[str]:
        subparser = parser._subparsers._group_actions[0].choices[name]
        return {option for action in subparser._actions for option in action.option_strings}

    assert options(build_parser(name)) == options(build_parser()) and len(options(build_parser(name))) > 1
