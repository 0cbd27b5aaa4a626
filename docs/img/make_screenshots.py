"""Make docs/img/overview.png and docs/img/drilldown.png from a real manager.

Usage: ``.venv/bin/python docs/img/make_screenshots.py`` (needs /usr/bin/chromium).

A temporary manager gets an hour of made-up history (completed jobs written to its database
before it starts, so the charts have something to show), then live jobs: some running, some
failing, some waiting on others, one no machine can run (a scheduler warning).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from wr.jobs import Job, State, compute_key, default_req_grp
from wr.store import Store

OUT = Path(__file__).resolve().parent
ARGS = ["--no-sandbox", "--disable-gpu", "--headless", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def history(db: Path) -> None:
    """Completed jobs over the last hour: what they asked for and what they used."""
    rng = random.Random(4)
    now = time.time()
    jobs = []
    plan = [(f"align/sample-{i:02d}", 60, 8192, 3600, (2500, 5200), (300, 900))
            for i in range(1, 7)]
    plan += [("qc/fastqc", 240, 2048, 3600, (150, 420), (60, 400)),
             ("index/bam", 120, 1024, 1800, (40, 90), (20, 90))]
    for group, n, ram, asked, peak, wall in plan:
        for i in range(n):
            cmd = f"{group.split('/')[0]}.sh --part {i} {group}"
            ended = now - rng.uniform(30, 3500)
            took = rng.uniform(*wall)
            job = Job(key=compute_key(cmd), cmd=cmd, rep_grp=group, req_grp=default_req_grp(cmd),
                      ram=ram, user_ram=ram, time=float(asked), user_time=float(asked), cores=1.0,
                      state=State.COMPLETE, exited=True, attempts=1, host="node1", pid=1000 + i,
                      started=ended - took, ended=ended, peak_ram=int(rng.uniform(*peak)),
                      cpu_time=took * 0.9, added=ended - took - 5, seq=len(jobs) + 1,
                      cwd="/data/project")
            jobs.append(job)

    async def write() -> None:
        await store.add_jobs(jobs)
        await store.archive(jobs)

    db.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db)
    store.open()
    try:
        asyncio.run(write())
    finally:
        store.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        socks = [socket.socket() for _ in range(2)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        port, web = (s.getsockname()[1] for s in socks)
        for s in socks:
            s.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WR_")}
        env.update(HOME=home, WR_MANAGERPORT=str(port), WR_MANAGERWEB=str(web),
                   WR_DEPLOYMENT="production", WR_RETRYDELAYMIN="600",
                   WR_RETRYDELAYMAX="600")
        mdir = Path(home) / ".wr_production"
        history(mdir / "db")
        wr = [sys.executable, "-m", "wr.cli.main"]
        subprocess.run([*wr, "manager", "start", "--max_cores", "3"], env=env, check=True,
                       capture_output=True)
        try:
            shoot(mdir, web)
        finally:
            subprocess.run([*wr, "manager", "stop"], env=env, capture_output=True)


def shoot(mdir: Path, web: int) -> None:
    import ssl

    from playwright.sync_api import expect, sync_playwright

    token = (mdir / "client.token").read_text().strip()
    ctx = ssl.create_default_context(cafile=str(mdir / "ca.pem"))
    api = httpx.Client(base_url=f"https://localhost:{web}", verify=ctx, trust_env=False,
                       headers={"Authorization": f"Bearer {token}"}, timeout=120)
    api.put("/rest/v1/limits/later", params={"limit": "0"}).raise_for_status()
    jobs = [
        {"cmd": f"sleep 90 # call variants chr{i}", "rep_grp": "variants/call", "cpus": 1,
         "dep_grps": ["variants"], "memory": "4G", "time": "2h"} for i in range(1, 3)
    ] + [
        {"cmd": f"true # call variants chr{i}", "rep_grp": "variants/call", "cpus": 1,
         "dep_grps": ["variants"], "limit_grps": ["later"]} for i in range(3, 23)
    ] + [
        {"cmd": "merge_vcfs.sh --out all.vcf", "rep_grp": "variants/merge", "deps": ["variants"]},
    ] + [
        {"cmd": f"echo 'fastqc: reading sample{i}.fq'; echo 'ERROR: sample{i}.fq is "
                f"truncated at line {i * 7919}' >&2; exit 2 # qc {i}",
         "rep_grp": "qc/fastqc", "retries": 0} for i in range(1, 4)
    ] + [
        {"cmd": "sleep 120 # fastqc sample9", "rep_grp": "qc/fastqc", "cpus": 1},
        {"cmd": "exit 1 # index retry", "rep_grp": "index/bam", "retries": 3},
        {"cmd": "assemble --genome huge", "rep_grp": "assembly", "memory": "900T",
         "override": 2},
    ]
    api.post("/rest/v1/jobs/", content=orjson.dumps(jobs)).raise_for_status()
    time.sleep(4)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_context(ignore_https_errors=True,
                                   viewport={"width": 1280, "height": 900}).new_page()
        page.goto(f"https://localhost:{web}/?token={token}")
        expect(page.locator("#conn")).to_have_text("live")
        expect(page.locator("#warnings")).to_be_visible()
        time.sleep(2)
        page.screenshot(path=str(OUT / "overview.png"), full_page=True)
        page.goto(f"https://localhost:{web}/?token={token}#group=qc%2Ffastqc")
        expect(page.locator("section.class.s-buried")).to_be_visible()
        expect(page.locator("#mem-chart svg")).to_be_visible()
        time.sleep(1.5)
        page.screenshot(path=str(OUT / "drilldown.png"), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
        browser.close()


if __name__ == "__main__":
    main()
