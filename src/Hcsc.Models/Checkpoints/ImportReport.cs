namespace Hcsc.Models.Checkpoints;

/// <summary>What an import from PyTorch did.</summary>
/// <param name="Loaded">Backbone keys that were filled from the file.</param>
/// <param name="SetAside">Keys of the file that were deliberately not loaded (the projection head, the key encoder, the queue, …), with their original names.</param>
public sealed record ImportReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> SetAside);
