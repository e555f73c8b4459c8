from helpers import results


def test_registry_appends_and_loads():
    before = len(results.load())
    results.record("99_test", "tiny", {"val_acc": 0.5}, {"lr": 0.1}, {"seconds": 1.0})
    results.record("99_test", "tiny", {"val_acc": 0.75})
    table = results.load()
    assert len(table) == before + 2
    assert table["metrics.val_acc"].iloc[-2:].tolist() == [0.5, 0.75]
