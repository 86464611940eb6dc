"""What is not the service: the model simulator with its scenarios, the benchmark, the soak
run and the offline demo. They use the product (the CLI starts them lazily as `tierd simulate`,
`tierd bench`, `tierd demo`); nothing in the product imports them.
"""
