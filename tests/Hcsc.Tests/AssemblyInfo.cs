// Tests share torch's global random generator and its thread pool; run them one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
