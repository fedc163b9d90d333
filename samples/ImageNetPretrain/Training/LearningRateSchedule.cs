namespace Hcsc.Samples.ImageNetPretrain.Training;

/// <summary>The reference schedule (docs/method.md §8): lr · batch / 256, cosine to 0 over the run, set per epoch.</summary>
public static class LearningRateSchedule
{
    /// <summary>lr_e = base · ½ (1 + cos(π e / E)) with cosine, else base (the step schedule of MoCo v1 is not offered).</summary>
    public static double At(int epoch, int epochs, double scaledBase, bool cosine) =>
        cosine ? scaledBase * 0.5 * (1 + Math.Cos(Math.PI * epoch / epochs)) : scaledBase;
}
