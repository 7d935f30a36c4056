"""Training: the Keras engine (optimizer, schedule, callbacks, resume) and the three
kinds of networks the paper compares (vanilla, generalist, specialists)."""
