"""The one-time toolchain of the local broker: a Java 17+ runtime and the Kafka jars.

Jars come from Maven Central through ``pom.xml`` next to this module and are cached in
``stack.cache_dir`` (shared by every project on the machine), so only the first ``up`` pays
for Maven.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

from headwater.stack.errors import DependencyResolutionError, ToolMissingError
from headwater.stack.kafka_config import MIN_JAVA, parse_java_version, pom_kafka_version
from headwater.stack.process import file_lock

__all__ = ["PACKAGE_POM", "check_java", "resolve_jars"]

log = logging.getLogger(__name__)

PACKAGE_POM = Path(__file__).with_name("pom.xml")
"""The pom that pins the broker and its Log4j2 backend."""

_MARKER = ".complete"
_MVN_TIMEOUT_S = 900.0


def _java_binary() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def check_java() -> str:
    """The path of a Java 17+ runtime, the minimum the Kafka 4.x broker runs on.

    Raises:
        ToolMissingError: when ``java`` is missing or older than 17.
    """
    fix = "install openjdk-17-jre-headless (apt-get install -y openjdk-17-jre-headless)"
    java = _java_binary()
    if java is None:
        raise ToolMissingError(f"Java {MIN_JAVA}+ not found: {fix}")
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolMissingError(f"Java {MIN_JAVA}+ not found ({java}: {exc}): {fix}") from exc
    version = parse_java_version(out.stderr + out.stdout)
    if version is None or version < MIN_JAVA:
        found = f"Java {version}" if version is not None else "an unrecognised java"
        raise ToolMissingError(f"Java {MIN_JAVA}+ not found ({java} is {found}): {fix}")
    return java


def _maven_error(output: str) -> str:
    clean = re.sub(r"\x1b\[[0-9;]*m", "", output)
    errors = [line.strip() for line in clean.splitlines() if line.strip().startswith("[ERROR]")]
    first = errors[0] if errors else (clean.strip().splitlines() or ["no output"])[-1]
    return first.removeprefix("[ERROR]").strip()[:300]


def _cached(libs: Path, marker: Path, digest: str) -> bool:
    return libs.is_dir() and marker.is_file() and marker.read_text().strip() == digest


def _run_maven(mvn: str, pom: Path, staging: Path, version: str) -> None:
    argv = [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies"]
    argv += ["-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_MVN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        msg = (
            f"Maven cannot reach Maven Central (no answer in {_MVN_TIMEOUT_S:.0f}s): "
            "check network or proxy access to repo.maven.apache.org and retry"
        )
        raise DependencyResolutionError(msg) from exc
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        msg = (
            f"Maven cannot reach Maven Central to fetch Kafka {version}: check network or "
            f"proxy access to repo.maven.apache.org (~/.m2/settings.xml) and retry "
            f"(mvn: {_maven_error(done.stdout + done.stderr)})"
        )
        raise DependencyResolutionError(msg)


def resolve_jars(cache_dir: Path, pom: Path = PACKAGE_POM) -> Path:
    """The directory of broker jars, resolved with Maven on first use and cached after.

    Jars are copied into a staging directory and the marker file is written only after the
    move, so an interrupted copy is never mistaken for a complete one. The marker holds the
    pom's hash, so editing the pom re-resolves. A lock file makes concurrent first runs (a CLI
    and a test session, say) resolve once instead of replacing each other's jars.

    Raises:
        ToolMissingError: when ``mvn`` is needed but missing.
        DependencyResolutionError: when Maven fails (usually no route to Maven Central).
    """
    version = pom_kafka_version(pom)
    root = cache_dir.expanduser().resolve() / f"kafka-{version}"
    libs, marker = root / "libs", root / _MARKER
    pom_text = pom.read_text()
    digest = hashlib.sha256(pom_text.encode()).hexdigest()
    if _cached(libs, marker, digest):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        msg = "Maven (mvn) not found: install maven (apt-get install -y maven) to fetch Kafka once"
        raise ToolMissingError(msg)
    with file_lock(root.with_name(f"{root.name}.lock")):
        if _cached(libs, marker, digest):  # another process finished while we waited
            return libs
        log.info("resolving Kafka %s jars into %s (first run only)", version, libs)
        root.mkdir(parents=True, exist_ok=True)
        marker.unlink(missing_ok=True)
        (root / "pom.xml").write_text(pom_text)
        staging = root / f"libs.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _run_maven(mvn, root / "pom.xml", staging, version)
        except DependencyResolutionError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
    return libs
