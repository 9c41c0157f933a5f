"""The task layer: takes messages off the queue and hands them to the connect nodes."""
