"""The conformance kits: check that your own model, or your own encoder, keeps fusionrank's
contract.

Subclass :class:`RecommenderTests` or :class:`EncoderTests` in a test module and run pytest
on it (this module imports pytest; ``import fusionrank`` does not import it)::

    from fusionrank.testing import EncoderTests, RecommenderTests

    class TestMyModel(RecommenderTests):
        model = "mypackage.models.MyModel"      # a registered name, dotted path or the class
        settings = {"epochs": 2, "dim": 8}      # small: the model is fitted four times
        cold_users = False                      # True: serves unknown users from side features

    class TestMyEncoder(EncoderTests):
        encoder = "mypackage.encoders.MyEncoder"  # a registered name, dotted path or the class
        settings = {"dim": 32}                    # its config's fields
        reads = "text"                            # or "image"

The model is fitted on a planted dataset (:func:`planted_dataset`) once per class, the
encoder built once per class; every check is a ``test_*`` method of the kit's class.
"""

from fusionrank.testing._data import planted_dataset
from fusionrank.testing._encoders import EncoderSpec, EncoderTests, sample_images
from fusionrank.testing._models import ModelSpec, RecommenderTests

__all__ = ["EncoderSpec", "EncoderTests", "ModelSpec", "RecommenderTests", "planted_dataset", "sample_images"]
