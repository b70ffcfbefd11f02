"""The relationship simulator: a customer base with known truth, our laboratory.

    sim = Simulator(SimConfig(customers=1000, days=90), seed=0)
    sim.run()                                  # default logging policy
    write_simulation(sim, "data/sim")          # five contract tables + truth/

See docs/simulator.md for the model and the truth files.
"""

from simulator.behaviour import EventBatch, Sessions
from simulator.catalogue import Catalogue
from simulator.config import CATEGORIES, SEGMENTS, SimConfig
from simulator.engine import DayResult, Simulator
from simulator.io import contacts_truth, customers_truth, dataset, write_simulation
from simulator.policies import (
    Contacts,
    DayView,
    Holdout,
    IncrementalOraclePolicy,
    NoOffers,
    OraclePolicy,
    Policy,
    RandomPolicy,
    no_contact,
)

__all__ = [
    "CATEGORIES",
    "SEGMENTS",
    "Catalogue",
    "Contacts",
    "DayResult",
    "DayView",
    "EventBatch",
    "Holdout",
    "IncrementalOraclePolicy",
    "NoOffers",
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
