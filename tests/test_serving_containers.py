"""Who started a serving container (container.OWNER_LABEL), without Docker: a later build removes the
containers of an owner that is gone and never judges owners it cannot see (another machine, another pid
namespace, an unreadable label). tests/test_serving.py runs the sweep against the real daemon."""
from __future__ import annotations

import subprocess
import sys

from deploykit.targets.serving import container as ctr


def test_a_live_owner_is_kept_and_a_dead_one_is_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        label = ctr.owner(child.pid)
        assert not ctr.owner_is_gone(label)  # alive
    finally:
        child.kill()
        child.wait()
    assert ctr.owner_is_gone(label)
    assert not ctr.owner_is_gone(ctr.owner())


def test_owners_it_cannot_see_are_never_judged():
    machine, pid, started = ctr.owner().split("/")
    boot, _, space = machine.partition(":")
    assert not ctr.owner_is_gone(f"another-boot:{space}/{pid}/1")  # another machine (or this one before a reboot)
    assert not ctr.owner_is_gone(f"{boot}:1/{pid}/1")  # another pid namespace: its pids are not ours
    for label in ("", "garbage", f"{machine}/x/1", f"{machine}/{pid}/None", f"{machine}/{pid}"):
        assert not ctr.owner_is_gone(label), label
