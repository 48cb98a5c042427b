"""The model manager: curated pairs with fit badges, hub search, local models and downloads."""
