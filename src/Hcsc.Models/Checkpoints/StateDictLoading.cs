using TorchSharp;
using static TorchSharp.torch;

namespace Hcsc.Models.Checkpoints;

/// <summary>Strict loading of a name → tensor dictionary into a module's parameters and buffers.</summary>
public static class StateDictLoading
{
    /// <summary>
    /// Copies every entry of <paramref name="source"/> into the module's tensor of the same name (converting dtype
    /// and device), after checking that both sides have the same keys and shapes. Nothing is copied unless
    /// everything fits. A missing <c>*.num_batches_tracked</c> is not an error (old PyTorch checkpoints lack it;
    /// PyTorch then leaves the counter at 0, and so does this method).
    /// </summary>
    /// <param name="module">The module to fill.</param>
    /// <param name="source">The state dict.</param>
    /// <param name="sourceDescription">Where it came from, for the error message.</param>
    /// <param name="excludeModuleKey">Module keys to leave alone (neither required nor loaded), or <c>null</c>.</param>
    /// <returns>The module keys that were loaded.</returns>
    /// <exception cref="StateDictMismatchException">Missing, unexpected or mis-shaped keys; all are listed.</exception>
    public static IReadOnlyList<string> LoadStrict(
        nn.Module module, IReadOnlyDictionary<string, Tensor> source, string sourceDescription, Func<string, bool>? excludeModuleKey = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        var target = module.state_dict()
            .Where(kv => excludeModuleKey is null || !excludeModuleKey(kv.Key))
            .ToDictionary(kv => kv.Key, kv => kv.Value);

        var missing = target.Keys.Where(k => !source.ContainsKey(k) && !k.EndsWith(".num_batches_tracked", StringComparison.Ordinal)).ToList();
        var unexpected = source.Keys.Where(k => !target.ContainsKey(k)).ToList();
        var misshaped = source
            .Where(kv => target.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key}: [{string.Join(", ", kv.Value.shape)}] in the file, [{string.Join(", ", target[kv.Key].shape)}] in the module")
            .ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || misshaped.Count > 0)
        {
            throw new StateDictMismatchException(sourceDescription, missing, unexpected, misshaped);
        }

        using var noGrad = no_grad();
        var loaded = new List<string>(source.Count);
        foreach (var (name, tensor) in target)
        {
            if (source.TryGetValue(name, out var value))
            {
                tensor.copy_(value);
                loaded.Add(name);
            }
            else
            {
                tensor.zero_();   // num_batches_tracked absent from an old checkpoint
            }
        }

        return loaded;
    }
}
