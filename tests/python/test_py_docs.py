"""docs/api.md's Python example runs as written (in a scratch directory)."""
import os
import re
import tempfile
import unittest

SRC = os.environ.get("CWBA_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


class TestDocs(unittest.TestCase):
    def test_python_example(self):
        with open(os.path.join(SRC, "docs", "api.md")) as f:
            blocks = re.findall(r"^```python\n(.*?)^```", f.read(), re.S | re.M)
        self.assertEqual(len(blocks), 1)
        old = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            try:
                ns = {}
                exec(compile(blocks[0], "docs/api.md", "exec"), ns)
            finally:
                os.chdir(old)
        r = ns["r"]
        self.assertGreater(r.mse, 0)
        self.assertEqual(int(r.n.sum()), 7 * 512)
        self.assertGreater(len(ns["data"]), 0)


if __name__ == "__main__":
    unittest.main()
