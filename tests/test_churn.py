"""ID churn between two exports (``semantic_ids.quality.churn``, ``semantic-ids diff``) on hand-made exports."""

import json

import numpy as np
import pytest

from semantic_ids import BuildConfig, ExportError
from semantic_ids.quality.churn import churn, churn_codes
from semantic_ids.cli.main import main
from semantic_ids.export.io import write_export
from semantic_ids.model.rqvae import RQVAE

CFG = BuildConfig().replace(model={"codebook_sizes": [4, 4], "hidden_dims": [8]})


def export(path, ids, codes):
    """An export holding exactly these ids and resolved codes (N, 3)."""
    model = RQVAE(input_dim=6, config=CFG.model)
    return write_export(path, config=CFG, model=model, metrics={}, ids=np.asarray(ids, dtype=object),
                        codes=np.asarray(codes, dtype=np.int64))


OLD_IDS = ["a", "b", "c", "d", "e"]
OLD = [[0, 0, 0], [0, 1, 0], [1, 2, 0], [1, 2, 1], [3, 3, 0]]
NEW_IDS = ["b", "a", "c", "d", "f", "g"]  # e removed; f, g added; another order
NEW = [[0, 1, 0],  # b: unchanged
       [0, 0, 1],  # a: only the collision level changed
       [1, 3, 0],  # c: level 2 changed
       [2, 2, 1],  # d: level 1 changed
       [3, 3, 0], [0, 0, 0]]


def test_churn_numbers_on_hand_made_codes():
    rep = churn_codes(np.array(OLD_IDS, dtype=object), np.array(OLD), np.array(NEW_IDS, dtype=object), np.array(NEW))
    assert (rep.n_old, rep.n_new, rep.n_common, rep.n_added, rep.n_removed) == (5, 6, 4, 2, 1)
    assert rep.prefix_changed == [0.25, 0.5, 0.75]
    assert rep.full_id_changed == 0.75


def test_churn_of_an_export_with_itself_is_zero(tmp_path):
    a = export(tmp_path / "a", OLD_IDS, OLD)
    rep = churn(a, a)
    assert rep.full_id_changed == 0.0 and rep.prefix_changed == [0.0, 0.0, 0.0]
    assert (rep.n_common, rep.n_added, rep.n_removed) == (5, 0, 0)


def test_churn_reads_exports_and_cli_prints_it(tmp_path, capsys):
    a, b = export(tmp_path / "a", OLD_IDS, OLD), export(tmp_path / "b", NEW_IDS, NEW)
    rep = churn(a, b)
    assert rep.prefix_changed == [0.25, 0.5, 0.75] and rep.n_added == 2 and rep.n_removed == 1
    assert main(["diff", str(a), str(b), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rep.to_dict()
    assert main(["diff", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "75.00%" in text and "prefix changed at depth 2" in text


def test_no_common_items_and_integer_ids():
    rep = churn_codes(np.array([1, 2]), np.array([[0, 0, 0], [0, 1, 0]]), np.array(["1", "2"], dtype=object),
                      np.array([[0, 0, 0], [0, 1, 0]]))
    assert rep.n_common == 0 and rep.full_id_changed == 0.0 and rep.n_added == 2 and rep.n_removed == 2
    rep = churn_codes(np.array([1, 2, 3]), np.array([[0, 0, 0], [0, 1, 0], [1, 1, 0]]), np.array([3, 2]),
                      np.array([[1, 1, 0], [1, 1, 1]]))
    assert rep.prefix_changed == [0.5, 0.5, 0.5] and rep.n_removed == 1


def test_bad_exports_name_the_path(tmp_path, capsys):
    a = export(tmp_path / "a", OLD_IDS, OLD)
    with pytest.raises(ExportError, match="nowhere"):
        churn(a, tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    assert main(["diff", str(tmp_path / "plain"), str(a)]) == 2
    assert "plain" in capsys.readouterr().err


def test_diff_does_not_import_torch(tmp_path):
    import subprocess
    import sys

    a, b = export(tmp_path / "a", OLD_IDS, OLD), export(tmp_path / "b", NEW_IDS, NEW)
    probe = (
        "import sys\n"
        "from semantic_ids.cli.main import main\n"
        f"code = main(['diff', {str(a)!r}, {str(b)!r}, '--json'])\n"
        "assert code == 0 and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_common"] == 4


def test_diff_of_exports_with_no_item_in_common_says_so(tmp_path, capsys):
    """Issue 24: two unrelated exports printed "full ID changed 0.00%", as if nothing moved."""
    a = export(tmp_path / "a", OLD_IDS, OLD)
    b = export(tmp_path / "b", ["x", "y"], [[0, 0, 0], [0, 1, 0]])
    assert main(["diff", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "share no items" in text and "%" not in text
    assert main(["diff", str(a), str(a)]) == 0  # with items in common the shares are printed
    assert "0.00%" in capsys.readouterr().out
