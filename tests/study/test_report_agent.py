import json

import pytest

from ctxsparse.agent.episode_store import EpisodeStore, episode_key
from ctxsparse.agent.records import EpisodeRecord, TurnRecord
from ctxsparse.cli.main import main
from ctxsparse.study.report_agent import aggregate, has_episodes, write_agent_report
from ctxsparse.study.stats import wilson


def record(task, method, sparsity, resolved, recall):
    turns = [
        TurnRecord(
            turn=i + 1,
            context_tokens=500 + 300 * i,
            prefilled_tokens=300,
            question_tokens=40,
            generated_tokens=20,
            reprefill=False,
            density=1 / sparsity,
            mass_recall=recall - 0.05 * i,
            top1_agreement=recall,
            kl=0.1,
            command="ls",
            returncode=0,
        )
        for i in range(3)
    ]
    if method == "dense":
        for t in turns:
            t.density = t.mass_recall = t.top1_agreement = t.kl = None
    return EpisodeRecord(
        task,
        "random:tiny-llama",
        method,
        sparsity,
        "question",
        0,
        resolved,
        3,
        60,
        1200,
        "Submitted",
        "namespaces",
        1.0,
        turn_records=turns,
    )


@pytest.fixture
def agent_db(tmp_path):
    db = tmp_path / "agent.db"
    outcomes = {
        ("dense", 1.0): [1, 1, 0, 1],
        ("oracle_topk", 10.0): [1, 0, 0, 1],
        ("oracle_topk", 50.0): [0, 0, 0, 1],
        ("oracle_topk", 100.0): [0, 0, 0, 0],
    }
    with EpisodeStore.open(db) as store:
        for (method, s), results in outcomes.items():
            for i, r in enumerate(results):
                store.add_episode(
                    episode_key(task=f"t{i}", method=method, sparsity=s),
                    record(f"t{i}", method, s, bool(r), 0.9 if s == 10 else 0.7),
                )
    return db


def test_aggregate_resolved_rate_with_wilson_ci(agent_db):
    report = write_agent_report(agent_db, agent_db.parent / "rep")
    cells = {(c.method, c.sparsity): c for c in report.cells}
    c = cells[("oracle_topk", 50.0)]
    assert (c.episodes, c.resolved, c.rate) == (4, 1, 0.25)
    assert (c.ci_low, c.ci_high) == pytest.approx(wilson(1, 4))
    assert [x.method for x in report.cells][0] == "dense"
    names = {p.name for p in report.plots}
    assert {
        "agent_resolved-random-tiny-llama.png",
        "agent_fidelity_vs_context-random-tiny-llama.png",
        "agent_fidelity_vs_turn-random-tiny-llama.png",
    } <= names
    assert all(p.stat().st_size > 1000 for p in report.plots)
    md = report.markdown.read_text()
    assert "oracle_topk | 50x | 4 | 1 (25%)" in md
    assert json.loads(report.json.read_text())["cells"][0]["episodes"] == 4
    assert "data:image/png;base64" in report.html.read_text()


def test_report_verb_reads_an_agent_database(agent_db, capsys):
    assert has_episodes(agent_db) and not has_episodes(agent_db.parent / "missing.db")
    assert main(["report", str(agent_db), "--out", str(agent_db.parent / "out")]) == 0
    assert "oracle_topk" in capsys.readouterr().out
    assert (agent_db.parent / "out" / "report.html").exists()


def test_empty_agent_database_refused(tmp_path):
    db = tmp_path / "empty.db"
    EpisodeStore.open(db).conn.close()
    with pytest.raises(ValueError, match="no episodes"):
        write_agent_report(db, tmp_path / "out")
    assert aggregate([]) == []
