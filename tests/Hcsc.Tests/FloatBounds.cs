namespace Hcsc.Tests;

/// <summary>
/// The rounding-error bounds the tests compare floats with, derived from the format rather than from what one CPU's
/// float path happened to give (MKL, ATen's vector kernels and the thread count each pick another summation order and
/// other exp/log approximations, so a tolerance one machine meets by luck fails on another).
/// </summary>
/// <remarks>
/// Every bound is the textbook worst case (Higham, <i>Accuracy and Stability of Numerical Algorithms</i>, §3.1):
/// a sum or dot product of n terms, in any order, is off by at most n·u·Σ|terms|, where u is the unit roundoff
/// (2⁻²⁴ for float32, 2⁻⁵³ for float64); an elementwise operation (exp, log, divide) adds a few u relative. The
/// constants name the few shapes of computation the tests compare.
/// </remarks>
internal static class FloatBounds
{
    /// <summary>float32's unit roundoff, 2⁻²⁴ ≈ 5.96e-8: the largest relative error of one rounded operation.</summary>
    public const double Float32 = 1.0 / (1 << 24);

    /// <summary>float64's unit roundoff, 2⁻⁵³ ≈ 1.11e-16.</summary>
    public const double Float64 = 1.0 / (1L << 53);

    /// <summary>
    /// Slack for the elementwise operations around a reduction (exp, log, divide, subtract): 16 rounded steps, enough
    /// for the few a compared formula has between its reductions even where exp and log are vector approximations
    /// (within 4 units in the last place, as VectorExp's and SLEEF's are).
    /// </summary>
    public const int ElementwiseSteps = 16;

    /// <summary>
    /// The absolute error of a sum or dot product of <paramref name="terms"/> terms whose absolute values add up to
    /// <paramref name="magnitude"/>, plus <see cref="ElementwiseSteps"/> rounded operations on the result, at unit
    /// roundoff <paramref name="unitRoundoff"/>.
    /// </summary>
    public static double Sum(long terms, double magnitude, double unitRoundoff) =>
        (terms + ElementwiseSteps) * unitRoundoff * Math.Max(magnitude, 1);

    /// <summary>
    /// The absolute error of a softmax probability (or of 1 − it, or of a log-probability) over
    /// <paramref name="classes"/> logits z·c/φ of unit vectors of width <paramref name="dim"/>, the largest of
    /// which is at most <paramref name="maxAbsLogit"/> in size: each logit errs by dim·u·|logit|, the log-sum-exp
    /// by classes·u·max|logit| more, and p = exp(logit − logsumexp) carries that absolute error (times p ≤ 1).
    /// </summary>
    public static double Softmax(long dim, long classes, double maxAbsLogit, double unitRoundoff) =>
        Sum(dim + classes, maxAbsLogit, unitRoundoff);

    /// <summary>
    /// The absolute error of a float32 network's output whose activations are at most <paramref name="scale"/> in
    /// size (batch norm keeps them O(1)): each of <paramref name="layers"/> layers adds the error of its reduction
    /// (at most <paramref name="largestReduction"/> products: k·k·C_in for a convolution), and the errors add up.
    /// </summary>
    public static double Network(long largestReduction, int layers, double scale) =>
        layers * Sum(largestReduction, scale, Float32);
}
