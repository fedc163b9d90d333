namespace Hcsc.Core.Options;

/// <summary>How per-level loss terms are combined (docs/method.md R2).</summary>
public enum LevelReduction
{
    /// <summary>Sum over levels, as the reference implementation does for ICSC.</summary>
    Sum,

    /// <summary>Mean over levels.</summary>
    Mean,
}
