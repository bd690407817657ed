"""Fine-tuning methods: each a small package with a typed config whose ``build`` applies it."""
