using Hcsc.Samples.ImageNetPretrain.Evaluation;

namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// What a run produced: the evaluations before (null when resumed) and after training (both null on the ranks other than
/// 0 of a data-parallel run, and when a test turned the evaluations off), and its files.
/// </summary>
public sealed record PretrainOutcome(EvaluationReport? Before, EvaluationReport? After, string Checkpoint, string Metrics);
