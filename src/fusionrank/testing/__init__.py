"""The model conformance kit: check that your own model keeps fusionrank's model contract.

Subclass :class:`RecommenderTests` in a test module and run pytest on it (this module
imports pytest; ``import fusionrank`` does not import it)::

    from fusionrank.testing import RecommenderTests

    class TestMyModel(RecommenderTests):
        model = "mypackage.models.MyModel"      # a registered name, dotted path or the class
        settings = {"epochs": 2, "dim": 8}      # small: the model is fitted four times
        cold_users = False                      # True: serves unknown users from side features

The model is fitted on a planted dataset (:func:`planted_dataset`) once per class; every
check is a ``test_*`` method of :class:`RecommenderTests`.
"""

from fusionrank.testing._data import planted_dataset
from fusionrank.testing._models import ModelSpec, RecommenderTests

__all__ = ["ModelSpec", "RecommenderTests", "planted_dataset"]
