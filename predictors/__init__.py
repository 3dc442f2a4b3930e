"""Latency, energy and accuracy predictors; they see feature arrays, never ORM rows."""

import os

# LightGBM's OpenMP threads spin while they wait for work. With two processes training on
# a 2-core machine (a service's job and a CLI run), each took 2.7x as long as alone, and a
# busy machine stalled training for minutes; waiting passively costs 0.5 s of 2 s alone
# and keeps two concurrent fits at 2.5 s each. A caller's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
