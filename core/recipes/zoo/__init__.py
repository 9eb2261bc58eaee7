"""Training recipes of the zoo's reference models, one module per family; importing this
package registers every trainer (:mod:`core.recipes.zoo.registry`)."""

from core.recipes.zoo.registry import TRAINERS, Progress, get_trainer, trainer

__all__ = ["TRAINERS", "Progress", "get_trainer", "trainer"]

from core.recipes.zoo import lalm as _lalm  # noqa: E402,F401  (registers the lalm-* trainers)
from core.recipes.zoo import ar as _ar  # noqa: E402,F401  (registers the ar-* trainers)
from core.recipes.zoo import diffusion as _diffusion  # noqa: E402,F401  (registers the diffusion-* trainers)
