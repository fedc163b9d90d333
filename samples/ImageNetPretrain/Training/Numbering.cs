namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>
/// The one place where the code's 0-based epochs and steps become the 1-based numbers people read (console, messages,
/// pause points). Records (<c>metrics.jsonl</c>, checkpoints) keep 0-based epochs and completed counts.
/// </summary>
public static class Numbering
{
    /// <summary>The 1-based number shown for the 0-based <paramref name="zeroBased"/> epoch or step.</summary>
    public static int Displayed(int zeroBased) => zeroBased + 1;
}
