"""Fine-tuning methods: each a module or package with a typed config registered by name
(``registry``), following the contract in ``contract``; see docs/adding-a-method.md."""
