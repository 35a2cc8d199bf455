"""How canonical values map to each vendor's fields and back."""
