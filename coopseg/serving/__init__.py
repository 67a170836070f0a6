"""Using a trained model: SavedModel export, photo preprocessing, prediction over folders."""
