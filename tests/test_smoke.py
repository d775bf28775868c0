def test_init_and_list(invoke, _isolated_home):
    r = invoke("init")
    assert r.exit_code == 0, r.output
    assert (_isolated_home / "tribute.duckdb").is_file()
    r = invoke("works", "list", "--json")
    assert r.exit_code == 0 and r.output.strip() == "[]"
