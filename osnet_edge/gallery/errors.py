"""The gallery's error (InputError: the user's database, model or query is what is wrong)."""
from osnet_edge.errors import InputError


class GalleryError(InputError):
    """A gallery that cannot be opened, belongs to another model, or a query it cannot answer."""
