"""The relationship simulator: a customer base with known truth, our laboratory.

    sim = Simulator(SimConfig(customers=1000, days=90), seed=0)
    sim.run()                                  # default logging policy
    write_simulation(sim, "data/sim")          # five contract tables + truth/

See docs/simulator.md for the model and the truth files.
"""

from nbo.simulator.behaviour import EventBatch, Sessions
from nbo.simulator.catalogue import Catalogue
from nbo.simulator.config import CATEGORIES, SEGMENTS, SimConfig
from nbo.simulator.engine import DayResult, Simulator
from nbo.simulator.io import contacts_truth, customers_truth, dataset, write_simulation
from nbo.simulator.policies import Contacts, DayView, OraclePolicy, Policy, RandomPolicy, no_contact

__all__ = [
    "CATEGORIES",
    "SEGMENTS",
    "Catalogue",
    "Contacts",
    "DayResult",
    "DayView",
    "EventBatch",
    "OraclePolicy",
    "Policy",
    "RandomPolicy",
    "Sessions",
    "SimConfig",
    "Simulator",
    "contacts_truth",
    "customers_truth",
    "dataset",
    "no_contact",
    "write_simulation",
]
