"""Issue 18: a notebook kernel, where cells are run again with new contents and modules autoreloaded.

Each notebook runs in one live ipykernel (nbclient); a cell "run again with new contents" is a
later cell with that content, as the kernel sees it.
"""

from __future__ import annotations

import json
import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _execute(directory, cells: list[str]) -> list:
    """Run ``cells`` in one kernel in ``directory``; the JSON the last cell prints."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(directory)}})
    client.execute()
    texts = [out.get("text", "") for out in nb.cells[-1].outputs if out.get("output_type") == "stream"]
    return json.loads("".join(texts).strip().splitlines()[-1])


def test_a_helper_cell_and_a_constant_cell_run_again_with_new_contents(tmp_path):
    cells = [
        "import json\nimport pairio",
        "def helper(x):\n    return x * 10",
        "FACTOR = 1\nOPTIONS = {'offset': 0}",
        "@pairio.cached\ndef step(x):\n    return helper(x) * FACTOR + OPTIONS['offset']",
        "r = [step(1)]",
        "def helper(x):\n    return x * 20",  # the helper cell, run again with a new body
        "r.append(step(1))",
        "FACTOR = 3",  # the constant cell, run again
        "r.append(step(1))",
        "OPTIONS['offset'] = 5",
        "r.append(step(1))",
        "def helper(x):\n    return x * 10",  # back to the first body: a hit on the first result
        "FACTOR = 1\nOPTIONS = {'offset': 0}",
        "r.append(step(1))",
        "print(json.dumps(r))",
    ]
    assert _execute(tmp_path, cells) == [10, 20, 60, 65, 10]


def test_autoreload_of_an_edited_module(tmp_path):
    module = ("def scale(x):\n    return x * 10\n\n\nclass Model:\n    def predict(self, x):\n"
              "        return x * 10\n")
    (tmp_path / "nb_helpers.py").write_text(module)
    edit = ("import os, pathlib\np = pathlib.Path('nb_helpers.py')\n"
            "p.write_text(p.read_text().replace('x * 10', 'x * 20 + 0'))\n"
            "st = os.stat(p)\nos.utime(p, (st.st_atime + 5, st.st_mtime + 5))")
    cells = [
        "%load_ext autoreload\n%autoreload 2",
        "import json\nimport pairio\nimport nb_helpers\nfrom nb_helpers import scale, Model",
        "@pairio.cached\ndef by_module(x):\n    return nb_helpers.scale(x)\n\n"
        "@pairio.cached\ndef by_name(x):\n    return scale(x)\n\n"
        "@pairio.cached\ndef by_class(x):\n    return Model().predict(x)\n\n"
        "@pairio.cached\ndef by_argument(model, x):\n    return model.predict(x)\n\nm = Model()",
        "r = [by_module(1), by_name(1), by_class(1), by_argument(m, 1)]",
        edit,
        "r += [by_module(1), by_name(1), by_class(1), by_argument(m, 1)]",
        # the @pairio.cached cell run again: the same
        "@pairio.cached\ndef by_module(x):\n    return nb_helpers.scale(x)",
        "r.append(by_module(1))",
        "print(json.dumps(r))",
    ]
    assert _execute(tmp_path, cells) == [10, 10, 10, 10, 20, 20, 20, 20, 20]


def test_the_kernel_sees_the_test_store():
    assert os.environ.get("PAIRIO_DB_PATH")  # the kernel inherits it: results go to the test's store


def _stderr_of_cells(directory, cells: list[str]) -> list[str]:
    """Run ``cells`` in one kernel in ``directory``; what each cell wrote to stderr."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(directory)}})
    client.execute()
    return ["".join(out.get("text", "") for out in cell.outputs
                    if out.get("output_type") == "stream" and out.get("name") == "stderr") for cell in nb.cells]


def test_each_cached_call_shows_one_short_line_in_a_kernel_unless_turned_off(tmp_path):
    cells = [
        "import os\nimport pairio\nT = 1",
        "@pairio.cached\ndef clean(x):\n    return x * T",
        "clean(1)",  # 2: a first miss
        "clean(1)",  # 3: a hit
        "T = 2",
        "clean(1)",  # 5: a miss, with what changed
        "@pairio.cached(verbose=False)\ndef quiet(x):\n    return x\n\nquiet(1)\nquiet(1)",  # 6
        "with pairio.config(verbose=False):\n    clean(1)\n    clean(7)",  # 7
        "os.environ['PAIRIO_VERBOSE'] = '0'\npairio.reset_config()\nclean(1)\nclean(8)",  # 8
    ]
    err = _stderr_of_cells(tmp_path, cells)
    assert err[2].startswith("pairio: miss clean ") and err[2].count("\n") == 1
    assert err[3].startswith("pairio: hit clean ") and ", saved " in err[3] and err[3].count("\n") == 1
    assert err[3].split()[3].rstrip(",") == err[2].split()[3].rstrip(",")  # the same key, 8 digits
    assert err[5].startswith("pairio: miss clean ") and "constant T changed" in err[5]
    assert err[6] == err[7] == err[8] == ""
