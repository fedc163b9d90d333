using Hcsc.Models.Optimization;
using TorchSharp.Modules;

namespace Hcsc.Models.Checkpoints;

/// <summary>
/// Reads optimiser state in TorchSharp's <c>save_state_dict</c> format (type name, LEB128 counts of option groups
/// and per-parameter states, then each), accepting a saved type name that shares the optimiser's format:
/// <see cref="ExplicitScalarSgd"/> reads what TorchSharp's <see cref="SGD"/> wrote (checkpoints of earlier versions)
/// and the other way round. TorchSharp's own <c>load_state_dict</c> refuses any other type name than its own.
/// </summary>
public static class OptimizerStateFormat
{
    private static readonly string[][] SameFormat = [[nameof(SGD), nameof(ExplicitScalarSgd)]];

    /// <summary>Loads the state that <paramref name="reader"/> is positioned at into <paramref name="optimizer"/>.</summary>
    /// <param name="reader">Positioned at the start of a <c>save_state_dict</c> record.</param>
    /// <param name="optimizer">The optimiser, built over the same parameters in the same order as the saved one.</param>
    /// <param name="source">Names the file in error messages, e.g. <c>'runs/hcsc/checkpoint.pth'</c>.</param>
    /// <exception cref="InvalidDataException">The saved optimiser is of another kind, or has other groups or parameters.</exception>
    public static void Load(BinaryReader reader, OptimizerHelper optimizer, string source)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(optimizer);
        string saved = reader.ReadString();
        string expected = optimizer.GetType().Name;
        if (saved != expected && !SameFormat.Any(names => names.Contains(saved) && names.Contains(expected)))
        {
            throw new InvalidDataException($"{source} holds the state of optimiser {saved}; this run uses {expected}.");
        }

        long groups = reader.Read7BitEncodedInt64();
        long states = reader.Read7BitEncodedInt64();
        var live = optimizer.state_dict();
        if (groups != live.Options.Count || states != live.State.Count)
        {
            throw new InvalidDataException(
                $"{source} holds optimiser state for {groups} parameter group(s) and {states} parameter(s); this model has {live.Options.Count} and {live.State.Count}.");
        }

        foreach (var options in live.Options)
        {
            options.LoadStateDict(reader);
        }

        foreach (var state in live.State)
        {
            state.LoadStateDict(reader);
        }
    }
}
