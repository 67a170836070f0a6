"""train(): the cooperative two-agent step, the loop around it, inputs and initialisation."""
