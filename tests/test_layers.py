"""The package's floors (pyproject's [tool.importlinter]) hold, and imports hidden inside functions stay rare and explained."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "parity"
# An import inside a function says why on its line or the one before: a fork or spawn constraint, a cycle, or
# the executable's startup (a handler that must be in place before the import).
REASONS = ("# spawn:", "# fork:", "# cycle:", "# startup:")
MAX_INTERNAL = 10


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True)
    print(done.stdout[-4000:], done.stderr[-2000:])
    assert done.returncode == 0, done.stdout[-4000:]


def _internal(node) -> bool:
    if isinstance(node, ast.ImportFrom):
        return bool(node.level) or (node.module or "").split(".")[0] == "parity"
    return isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "parity" for alias in node.names)


def internal_function_imports() -> list[tuple[str, int, str]]:
    """Every import of a parity module inside a function body: (file, line, source line)."""
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for function in ast.walk(ast.parse(text)):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found |= {(str(path.relative_to(ROOT)), node.lineno, lines[node.lineno - 1].strip())
                          for node in ast.walk(function) if _internal(node)}
    return sorted(found)


def test_internal_imports_inside_functions_are_few_and_explained():
    found = internal_function_imports()
    unexplained = []
    for file, line, source in found:
        lines = (ROOT / file).read_text().splitlines()
        context = lines[line - 1] + (lines[line - 2] if line > 1 else "")
        print(f"{file}:{line}: {source}")
        if not any(reason in context for reason in REASONS):
            unexplained.append(f"{file}:{line}: {source}")
    assert len(found) < MAX_INTERNAL, f"{len(found)} imports of parity modules inside functions (fewer than {MAX_INTERNAL} allowed)"
    assert not unexplained, "imports inside functions without a '# spawn:' / '# fork:' / '# cycle:' reason:\n" + "\n".join(unexplained)
