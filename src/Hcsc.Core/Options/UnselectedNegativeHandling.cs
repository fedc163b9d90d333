namespace Hcsc.Core.Options;

/// <summary>How a negative that the selector did not select enters the softmax (docs/method.md R1).</summary>
public enum UnselectedNegativeHandling
{
    /// <summary>The reference implementation: the logit is multiplied by 0, so the negative still adds e⁰ to the denominator.</summary>
    ZeroLogit,

    /// <summary>The paper's formula: the negative is left out of the softmax (its logit is −∞).</summary>
    Exclude,
}
