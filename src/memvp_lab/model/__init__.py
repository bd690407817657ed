"""The model a method builds: a frozen language model, the method's prompting module and what it injects."""
