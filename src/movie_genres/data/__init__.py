"""Reading and validating a dataset folder, and splitting it."""
from movie_genres.data.dataset import DataError, Dataset, default_data_dir, load_dataset

__all__ = ["DataError", "Dataset", "default_data_dir", "load_dataset"]
