using static TorchSharp.torch;

namespace Hcsc.Models.Checkpoints;

/// <summary>What <see cref="TrainingCheckpoint.Load"/> returns besides the restored model, optimiser and queue.</summary>
/// <param name="Epoch">The epoch number saved.</param>
/// <param name="Metadata">The named strings saved.</param>
/// <param name="ExtraTensors">The extra named tensors saved (CPU; the caller disposes them).</param>
public sealed record CheckpointContents(long Epoch, IReadOnlyDictionary<string, string> Metadata, IReadOnlyDictionary<string, Tensor> ExtraTensors);
