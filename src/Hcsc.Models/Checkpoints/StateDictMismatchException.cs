namespace Hcsc.Models.Checkpoints;

/// <summary>
/// A state dict does not fit a module: keys the module needs are missing, keys the module does not have are
/// present, or shapes differ. The message lists every problem; the lists are also available as properties.
/// </summary>
public sealed class StateDictMismatchException : Exception
{
    /// <summary>Creates the exception from the three lists of problems.</summary>
    /// <param name="source">Where the state dict came from (a path or a description), for the message.</param>
    /// <param name="missing">Keys the module has and the state dict lacks.</param>
    /// <param name="unexpected">Keys the state dict has and the module lacks.</param>
    /// <param name="misshaped">One line per key whose shapes differ, e.g. <c>conv1.weight: [64, 3, 7, 7] in the file, [64, 3, 3, 3] in the module</c>.</param>
    public StateDictMismatchException(string source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misshaped)
        : base(Format(source, missing, unexpected, misshaped))
    {
        Missing = missing;
        Unexpected = unexpected;
        Misshaped = misshaped;
    }

    /// <summary>Keys the module has and the state dict lacks.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Keys the state dict has and the module lacks.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>Keys present on both sides with different shapes, one description each.</summary>
    public IReadOnlyList<string> Misshaped { get; }

    private static string Format(string source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> misshaped)
    {
        var parts = new List<string>();
        if (missing.Count > 0)
        {
            parts.Add($"missing keys ({missing.Count}): {string.Join(", ", missing)}");
        }

        if (unexpected.Count > 0)
        {
            parts.Add($"unexpected keys ({unexpected.Count}): {string.Join(", ", unexpected)}");
        }

        if (misshaped.Count > 0)
        {
            parts.Add($"mis-shaped keys ({misshaped.Count}): {string.Join("; ", misshaped)}");
        }

        return $"The state dict from {source} does not fit the module: {string.Join(". ", parts)}.";
    }
}
