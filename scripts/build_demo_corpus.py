"""Build the demo data set shipped in ``src/geckokit/data/demo``: the documentation of 79
Python standard-library functions and classes (from their docstrings; PSF licence, see
LICENSE.PSF there) as a BEIR folder, with hand-written test questions and relevance labels.

    python scripts/build_demo_corpus.py

The docstrings differ a little between Python versions; the shipped files were built with
CPython 3.11 and are not rebuilt at install time.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "geckokit" / "data" / "demo"
MAX_CHARS = 700

NAMES = """os.getcwd os.listdir os.makedirs os.remove os.rename os.walk os.path.join
os.path.exists os.path.splitext os.path.getsize os.path.expanduser os.path.basename
shutil.copyfile shutil.rmtree shutil.move shutil.which shutil.disk_usage json.dumps json.loads
re.sub re.findall re.split re.escape itertools.chain itertools.groupby itertools.permutations
itertools.product itertools.islice collections.Counter collections.deque collections.namedtuple
collections.OrderedDict collections.defaultdict functools.lru_cache functools.partial
functools.reduce heapq.heappush heapq.nlargest bisect.insort bisect.bisect_left math.gcd
math.isclose math.floor math.comb statistics.median statistics.stdev random.shuffle
random.choice random.sample time.sleep time.perf_counter datetime.datetime.strptime
datetime.datetime.fromisoformat datetime.timedelta subprocess.run tempfile.mkdtemp
tempfile.NamedTemporaryFile glob.glob fnmatch.fnmatch hashlib.sha256 base64.b64encode
urllib.parse.urlparse urllib.parse.quote textwrap.dedent textwrap.wrap string.capwords
str.splitlines str.zfill str.partition gzip.open zipfile.ZipFile difflib.get_close_matches
copy.deepcopy sys.getsizeof pathlib.Path.glob pathlib.Path.read_text uuid.uuid4
secrets.token_hex operator.itemgetter""".split()

# Test questions written for this set, each with the one function that answers it.
QUESTIONS = [
    ("How do I find out which directory my script is currently running in?", "os.getcwd"),
    ("Create a folder together with all missing parent folders", "os.makedirs"),
    ("delete a file from disk", "os.remove"),
    ("iterate over every file in a directory tree recursively", "os.walk"),
    ("check whether a file or folder path is present", "os.path.exists"),
    ("get the file extension from a filename", "os.path.splitext"),
    ("how many bytes does a file take", "os.path.getsize"),
    ("turn ~ into the user's home directory in a path", "os.path.expanduser"),
    ("delete a directory that still has files in it", "shutil.rmtree"),
    ("find the full path of an executable program on PATH", "shutil.which"),
    ("how much free space is left on the disk", "shutil.disk_usage"),
    ("convert a Python dict to a JSON string", "json.dumps"),
    ("parse a JSON string into Python objects", "json.loads"),
    ("replace all matches of a regular expression in a string", "re.sub"),
    ("get a list of all non-overlapping regex matches", "re.findall"),
    ("make a string safe to use literally inside a regex pattern", "re.escape"),
    ("concatenate several iterables into one iterator", "itertools.chain"),
    ("group consecutive items that share the same key", "itertools.groupby"),
    ("all possible orderings of a list", "itertools.permutations"),
    ("cartesian product of two lists", "itertools.product"),
    ("take only the first n items of a generator", "itertools.islice"),
    ("count how often each word occurs", "collections.Counter"),
    ("a queue that supports fast appends and pops at both ends", "collections.deque"),
    ("dictionary that gives a default value for missing keys", "collections.defaultdict"),
    ("cache the results of an expensive function call", "functools.lru_cache"),
    ("fix some arguments of a function to make a new callable", "functools.partial"),
    ("get the k largest elements of a list efficiently", "heapq.nlargest"),
    ("insert into a sorted list while keeping it sorted", "bisect.insort"),
    ("compare two floating point numbers for approximate equality", "math.isclose"),
    ("number of ways to choose k items from n", "math.comb"),
    ("middle value of a list of numbers", "statistics.median"),
    ("standard deviation of a sample", "statistics.stdev"),
    ("randomly reorder the elements of a list in place", "random.shuffle"),
    ("pick k distinct random elements from a population", "random.sample"),
    ("pause the program for a few seconds", "time.sleep"),
    ("high resolution timer for measuring elapsed time", "time.perf_counter"),
    ("parse a date string with a format like %Y-%m-%d", "datetime.datetime.strptime"),
    ("represent a duration such as 3 days and 4 hours", "datetime.timedelta"),
    ("run an external command and wait for it to finish", "subprocess.run"),
    ("create a temporary directory", "tempfile.mkdtemp"),
    ("list files matching a wildcard pattern like *.txt", "glob.glob"),
    ("compute the SHA-256 hash of some bytes", "hashlib.sha256"),
    ("encode binary data as base64", "base64.b64encode"),
    ("split a URL into scheme, host, path and query", "urllib.parse.urlparse"),
    ("percent-encode special characters for use in a URL", "urllib.parse.quote"),
    ("remove common leading indentation from a multi-line string", "textwrap.dedent"),
    ("pad a number string with leading zeros", "str.zfill"),
    ("find words similar to a misspelled word", "difflib.get_close_matches"),
    ("make a full independent copy of a nested object", "copy.deepcopy"),
    ("generate a random unique identifier", "uuid.uuid4"),
    ("secure random token for a password reset link", "secrets.token_hex"),
    ("sort a list of tuples by the second field", "operator.itemgetter"),
]


def _lookup(name: str) -> object:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    import builtins

    obj = builtins
    for attr in parts:
        obj = getattr(obj, attr)
    return obj


def _doc(name: str) -> str:
    doc = inspect.getdoc(_lookup(name)) or ""
    doc = " ".join(doc.split())
    if len(doc) > MAX_CHARS:
        doc = doc[:MAX_CHARS].rsplit(" ", 1)[0] + " ..."
    return doc


def main() -> None:
    known = set(NAMES)
    missing = sorted({f for _, f in QUESTIONS} - known)
    if missing:
        raise SystemExit(f"questions name unknown functions: {missing}")
    (OUT / "qrels").mkdir(parents=True, exist_ok=True)
    with (OUT / "corpus.jsonl").open("w") as f:
        for name in NAMES:
            f.write(json.dumps({"_id": name, "title": name, "text": _doc(name)}) + "\n")
    with (OUT / "queries.jsonl").open("w") as f:
        for i, (q, _) in enumerate(QUESTIONS, 1):
            f.write(json.dumps({"_id": f"q{i:02d}", "text": q}) + "\n")
    with (OUT / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i, (_, name) in enumerate(QUESTIONS, 1):
            f.write(f"q{i:02d}\t{name}\t1\n")
    print(f"{len(NAMES)} passages, {len(QUESTIONS)} questions -> {OUT}")


if __name__ == "__main__":
    main()
