"""One run of the command line: plan and checks, teachers provided, the student's stages,
compression after training, resuming, the report and a sweep's summary."""
