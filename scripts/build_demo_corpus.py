"""Build the demo data set shipped in ``src/geckokit/data/demo``: the Tor manual, tor(1) of
Debian's ``tor`` package (3-clause BSD licence, see LICENSE.tor there), one passage per
option, signal or file it describes, as a BEIR folder with hand-written test questions and
relevance labels.

    python scripts/build_demo_corpus.py                  # fetches the package with apt-get
    python scripts/build_demo_corpus.py --deb tor_0.4.9.11-0+deb12u1_amd64.deb

Rendering the manual page needs groff (Debian's groff-base, which man-db depends on). The
shipped files were built from the version named in ``VERSION``; another version's manual
adds, drops or rewords a few entries, and the script stops if a test question's passage is
missing.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "geckokit" / "data" / "demo"
PACKAGE, VERSION = "tor", "0.4.9.11-0+deb12u1"
MAN_PAGE = "usr/share/man/man1/tor.1.gz"
MIN_WORDS, MAX_WORDS = 20, 250
# Manual sections left out: headers and pointers, and the options that only matter when
# running a private test network.
SKIP_SECTIONS = {"NAME", "SYNOPSIS", "SEE ALSO", "BUGS", "AUTHORS", "TESTING NETWORK OPTIONS"}
TERM_INDENT = 7  # groff's man layout: headings at 0, entry names at 7, their text deeper


def read_deb_member(deb: Path, member: str) -> bytes:
    """One file of a Debian package (an ``ar`` archive holding ``data.tar.*``)."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(blob):
        name = blob[pos : pos + 16].decode().strip().rstrip("/")
        size = int(blob[pos + 48 : pos + 58].decode().strip())
        body = blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for info in tar.getmembers():
                    if info.name.lstrip("./") == member:
                        f = tar.extractfile(info)
                        if f is not None:
                            return f.read()
            raise ValueError(f"{deb} has no {member}")
    raise ValueError(f"{deb} has no data.tar member")


def download_deb(folder: Path) -> Path:
    """``apt-get download`` the pinned package version into ``folder``."""
    subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=folder, check=True)
    [deb] = folder.glob(f"{PACKAGE}_*.deb")
    return deb


def render(man_gz: bytes) -> list[str]:
    """The manual page as plain text lines: one very long line per paragraph, so that
    indentation alone tells headings, entry names and their text apart."""
    if shutil.which("groff") is None:
        raise SystemExit("groff is needed to render the manual page: apt-get install groff-base")
    text = subprocess.run(
        ["groff", "-man", "-t", "-Tutf8", "-P-cbou", "-rLL=5000n", "-rHY=0"],
        input=gzip.decompress(man_gz),
        capture_output=True,
        check=True,
    ).stdout.decode()
    for a, b in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"')):
        text = text.replace(a, b)
    return [line.rstrip() for line in text.splitlines()]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


# An option name: CamelCase (``ExitNodes``), underscore-prefixed or a command-line flag.
_NAME = re.compile(r"^(?:__|--?)?[A-Za-z0-9]*[a-z0-9][A-Z][A-Za-z0-9_|.-]*$|^--?[a-z][a-z-]*")
# A manual slip: an option and its description on one line (``FamilyKeyDirectory dir: ...``).
_INLINE = re.compile(r"^([A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+)(?: [^:]{0,40})?: (.+)$")


def _names_only(line: str) -> bool:
    """A line that names an option without describing it: one of several names that share
    the description below the last of them."""
    s = line.strip()
    words = s.split()
    return (
        _indent(line) == TERM_INDENT
        and bool(_NAME.match(words[0]))
        and len(words) <= 6
        and not s.endswith(":")
        and not (s.endswith(".") and not s.endswith("..."))
    )


def _is_term(line: str, following: str | None) -> bool:
    """An entry name: at the entry indent, with indented text after it, and not prose
    (prose ends with a full stop or runs long; a few short headings end with a colon)."""
    if _indent(line) != TERM_INDENT or following is None or _indent(following) <= TERM_INDENT:
        return False
    s = line.strip()
    if s.endswith(":"):
        return len(s.split()) <= 3
    return not (s.endswith(".") and not s.endswith("...")) and len(s.split()) <= 25


def _names(term: str, section: str) -> list[str]:
    """The names an entry line gives (``-f, --torrc-file FILE`` gives both flags;
    ``Log minSeverity ...`` gives ``Log``)."""
    if section == "FILES":
        return [term]
    if term.endswith(":"):
        return [term[:-1]]
    names = [part.split()[0] for part in re.split(r",\s+(?=[-_A-Za-z])", term) if part.split()]
    return list(dict.fromkeys(names))


def _clean(line: str) -> str:
    """One rendered line without the markup that leaks from the manual's AsciiDoc source."""
    s = line.strip()
    s = re.sub(r"<<[^,>]+,([^>]+)>>", r"\1", s)  # cross-reference
    s = re.sub(r"(?<=[\s.)])\+$|^\+$", "", s)  # list continuation mark
    s = s.replace("\\_", "_")
    return "Note:" if s in ("Note", "Warning", "Important") else s


def parse(lines: list[str]) -> list[dict[str, str]]:
    """Entries of the rendered manual as ``{"_id", "title", "text", "section"}``: one per
    option (or group of options sharing a description), signal, file or command-line flag,
    plus one for each section's own prose. Entries of the same name in a row (the forms of
    ``Log``) are joined."""
    nonblank = [line for line in lines if line.strip()]
    entries: list[dict[str, str]] = []
    section = ""
    current: dict[str, str] | None = None  # the entry whose text the next lines extend
    prose: dict[str, list[str]] = {}
    pending: list[str] = []  # names waiting for the description they share
    for i, line in enumerate(nonblank):
        following = nonblank[i + 1] if i + 1 < len(nonblank) else None
        s = _clean(line)
        if _indent(line) == 0:
            section, current, pending = s, None, []
            continue
        if section in SKIP_SECTIONS or not s:
            continue
        inline = _INLINE.match(s) if _indent(line) == TERM_INDENT else None
        if _is_term(line, following) or inline:
            names = pending + ([inline.group(1)] if inline else _names(s, section))
            pending = []
            title = ", ".join(dict.fromkeys(names))
            pid = next((n for n in names if n.startswith("--")), names[0]).split()[0]
            if section == "CLIENT AUTHORIZATION":
                title = f"Client authorization, {title.lower()}"
                pid = title.lower().replace(",", "").replace(" ", "-")
            if entries and entries[-1]["_id"] == pid:
                current = entries[-1]
            else:
                current = {"_id": pid, "title": title, "text": "", "section": section}
                entries.append(current)
            if inline:
                current["text"] += " " + inline.group(2)
                current = None
        elif _names_only(line):
            pending.append(s.split()[0])
            current = None
        elif _indent(line) == TERM_INDENT and s.isupper() and s.endswith(":"):
            current = None  # a sub-heading such as PER SERVICE OPTIONS:
        elif _indent(line) == TERM_INDENT or current is None:
            current = None
            prose.setdefault(section, []).extend([*pending, s])
            pending = []
        else:
            current["text"] += " " + s
    for name, parts in prose.items():
        entries.append(
            {
                "_id": name.lower().replace(" ", "-"),
                "title": name.capitalize(),
                "text": " ".join(parts),
                "section": name,
            }
        )
    return entries


def shorten(text: str, max_words: int = MAX_WORDS) -> str:
    """``text`` with whitespace collapsed, cut after the last full sentence that ends within
    ``max_words`` words (or at ``max_words`` words if none does)."""
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    head = " ".join(words[:max_words])
    end = head.rfind(". ")
    return (head[: end + 1] if end > len(head) // 2 else head) + " ..."


def passages(lines: list[str]) -> list[dict[str, str]]:
    """The corpus rows: entries with at least ``MIN_WORDS`` words, shortened to at most
    ``MAX_WORDS``, in manual order (the sections' own prose last)."""
    rows = []
    seen: set[str] = set()
    for entry in parse(lines):
        if len(entry["text"].split()) < MIN_WORDS or entry["_id"] in seen:
            continue
        seen.add(entry["_id"])
        rows.append({"_id": entry["_id"], "title": entry["title"], "text": shorten(entry["text"])})
    return rows


# Test questions written for this set (by reading the passages and asking what a Tor user,
# relay operator or onion-service operator would type), each with the passages that answer it.
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    (
        "How do I use obfs4 bridges to get around censorship?",
        ("Bridge", "ClientTransportPlugin", "UseBridges"),
    ),
    ("only use exit relays in one country", ("ExitNodes",)),
    ("never build circuits through relays located in certain countries", ("ExcludeNodes",)),
    ("Tor still used a node I excluded. How do I make the exclusion mandatory?", ("StrictNodes",)),
    ("change the SOCKS listener from port 9050", ("SocksPort",)),
    ("resolve DNS lookups over Tor for programs that can't speak SOCKS", ("DNSPort",)),
    ("transparent proxy iptables redirect all TCP through tor", ("TransPort", "TransProxyType")),
    ("Can Tor act as an HTTP CONNECT proxy for my browser?", ("HTTPTunnelPort",)),
    (
        "firewall only lets me out on ports 80 and 443",
        ("FascistFirewall", "ReachableAddresses", "FirewallPorts"),
    ),
    (
        "reach the Tor network through a company HTTPS proxy that needs a login",
        ("HTTPSProxy", "HTTPSProxyAuthenticator"),
    ),
    ("how often does tor switch to a fresh circuit for new connections", ("MaxCircuitDirtiness",)),
    ("websites keep logging me out because my exit IP keeps changing", ("TrackHostExits",)),
    (
        "stop apps from sending passwords unencrypted over telnet or POP3 through tor",
        ("WarnPlaintextPorts", "RejectPlaintextPorts"),
    ),
    ("is my application leaking DNS requests outside of Tor?", ("TestSocks", "SafeSocks")),
    ("number of entry guards", ("NumEntryGuards", "NumPrimaryGuards")),
    ("Why does my client keep the same first hop for weeks?", ("UseEntryGuards", "GuardLifetime")),
    (
        "guard discovery attack mitigation vanguards",
        ("VanguardsLiteEnabled", "HSLayer2Nodes", "HSLayer3Nodes"),
    ),
    (
        "use less data on a metered phone connection by cutting cover traffic",
        (
            "ConnectionPadding",
            "ReducedConnectionPadding",
            "CircuitPadding",
            "ReducedCircuitPadding",
        ),
    ),
    ("running a Tor client on an IPv6-only host", ("ClientUseIPv6", "ClientUseIPv4")),
    (
        "stop tor from touching the network after a day of not being used",
        ("DormantClientTimeout", "dormant-mode-options"),
    ),
    (
        "visit an onion site that needs my private x25519 authorization key",
        ("client-authorization-client-side", "ClientOnionAuthDir"),
    ),
    (
        "on a very slow link streams get detached and retried on a new circuit too quickly",
        ("CircuitStreamTimeout",),
    ),
    (
        "make .onion hostnames work with apps that resolve an address before connecting",
        ("AutomapHostsOnResolve",),
    ),
    ("force connections to one website to leave through a chosen exit relay", ("MapAddress",)),
    ("How do I host my website as an onion service?", ("HiddenServiceDir", "HiddenServicePort")),
    (
        "where is the .onion address of my new hidden service stored",
        ("HiddenServiceDirectory/hostname",),
    ),
    ("only let approved users connect to my onion service", ("client-authorization-service-side",)),
    (
        "onion service swamped by introduction floods, client puzzle proof-of-work",
        ("HiddenServicePoWDefensesEnabled",),
    ),
    (
        "rate limit INTRODUCE2 cells at the intro point",
        (
            "HiddenServiceEnableIntroDoSDefense",
            "HiddenServiceEnableIntroDoSRatePerSec",
            "HiddenServiceEnableIntroDoSBurstPerSec",
        ),
    ),
    (
        "single onion service: lower latency, but the server is not anonymous",
        ("HiddenServiceSingleHopMode", "HiddenServiceNonAnonymousMode"),
    ),
    (
        "spread one onion service over several backend servers",
        ("HiddenServiceOnionBalanceInstance", "HiddenServicePort"),
    ),
    (
        "cap concurrent streams per rendezvous circuit",
        ("HiddenServiceMaxStreams", "HiddenServiceMaxStreamsCloseCircuit"),
    ),
    (
        "Can my backend tell which Tor circuit an onion request came in on?",
        ("HiddenServiceExportCircuitID",),
    ),
    ("run an unlisted bridge instead of a public relay", ("BridgeRelay",)),
    ("I don't want BridgeDB to give out my bridge's address", ("BridgeDistribution",)),
    ("run obfs4proxy on my bridge server", ("ServerTransportPlugin", "ServerTransportListenAddr")),
    ("relay monthly traffic quota, then hibernate", ("AccountingMax", "AccountingStart")),
    ("throttle how much bandwidth my relay uses", ("RelayBandwidthRate", "BandwidthRate")),
    (
        "run a middle relay that never lets traffic exit to the internet",
        ("ExitRelay", "ExitPolicy"),
    ),
    ("exit policy that allows web traffic only", ("ExitPolicy",)),
    (
        "I operate several relays. How do I stop clients from putting two of them in one circuit?",
        ("MyFamily", "FamilyId", "--keygen-family"),
    ),
    ("how can people reach the operator of a misconfigured relay", ("ContactInfo",)),
    (
        "keep the relay's ed25519 master identity key offline",
        ("OfflineMasterKey", "KeyDirectory/ed25519_master_id_secret_key", "--keygen"),
    ),
    (
        "server with several IP addresses: choose the one outgoing connections come from",
        ("OutboundBindAddress", "OutboundBindAddressExit", "OutboundBindAddressOR"),
    ),
    ("relay starts killing circuits when it is short of RAM", ("MaxMemInQueues",)),
    ("export relay metrics to Prometheus", ("MetricsPort", "MetricsPortPolicy")),
    ("tor won't start: not enough file descriptors (ulimit)", ("ConnLimit",)),
    (
        "protect my relay from one IP address opening thousands of connections",
        (
            "DoSConnectionEnabled",
            "DoSConnectionMaxConcurrentCount",
            "denial-of-service-mitigation-options",
        ),
    ),
    ("0x20 case randomization of DNS queries on an exit", ("ServerDNSRandomizeCase",)),
    (
        "my exit's ISP nameserver redirects failed lookups to an ad page",
        ("ServerDNSDetectHijacking", "ServerDNSTestAddresses"),
    ),
    ("show a legal notice web page for my exit node", ("DirPortFrontPage",)),
    ("relay behind port forwarding: advertise one port but listen on another", ("ORPort",)),
    ("password for the control port", ("HashedControlPassword",)),
    ("How do I make tor re-read torrc without restarting it?", ("SIGHUP",)),
    ("how long does a relay wait before exiting after Ctrl-C", ("ShutdownWaitLength", "SIGINT")),
    ("write debug level logs to a file", ("Log", "command-line-options")),
    (
        "split torrc into several files with an include directive",
        ("the-configuration-file-format",),
    ),
    ("print only the options I changed from their defaults", ("--dump-config",)),
    ("lock tor's memory so keys never get paged out to swap", ("DisableAllSwap",)),
    ("Tor on a Raspberry Pi: reduce writes to the SD card", ("AvoidDiskWrites",)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", type=Path, help=f"a downloaded {PACKAGE} .deb to read")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deb = args.deb or download_deb(Path(tmp))
        rows = passages(render(read_deb_member(deb, MAN_PAGE)))
    known = {r["_id"] for r in rows}
    missing = sorted({p for _, ps in QUESTIONS for p in ps} - known)
    if missing:
        raise SystemExit(f"questions name passages the manual lacks: {missing}")
    (OUT / "qrels").mkdir(parents=True, exist_ok=True)
    with (OUT / "corpus.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    with (OUT / "queries.jsonl").open("w") as f:
        for i, (q, _) in enumerate(QUESTIONS, 1):
            f.write(json.dumps({"_id": f"q{i:02d}", "text": q}) + "\n")
    with (OUT / "qrels" / "test.tsv").open("w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i, (_, ids) in enumerate(QUESTIONS, 1):
            for pid in ids:
                f.write(f"q{i:02d}\t{pid}\t1\n")
    words = sum(len(r["text"].split()) for r in rows) / len(rows)
    print(
        f"{len(rows)} passages ({words:.0f} words on average), {len(QUESTIONS)} questions -> {OUT}"
    )


if __name__ == "__main__":
    main()
