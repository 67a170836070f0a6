"""The method contract (``tests/method_contract.py``), for every other entry of the method
table from the second: run side by side with its twin file."""
from tests.method_contract import check_method_contract, half


@half(1)
def test_method_contract(tmp_path, name, mode):
    check_method_contract(tmp_path, name, mode)
