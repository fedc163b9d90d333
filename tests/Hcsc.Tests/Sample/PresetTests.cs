using Hcsc.Core.Options;
using Hcsc.Samples.ImageNetPretrain.Commands;

namespace Hcsc.Tests.Sample;

public class PresetTests
{
    public static TheoryData<string> Names => new(Presets.All.Keys);

    [Theory]
    [MemberData(nameof(Names))]
    public void Every_preset_binds_and_validates(string name)
    {
        using var error = new StringWriter();
        var options = HcscOptionsLoader.Load(Presets.All[name], null, new Dictionary<string, string?>(), error);
        error.ToString().Should().BeEmpty($"the {name} preset uses only current keys and valid values");
        options.Should().NotBeNull();
        HcscOptionsValidator.Problems(options!).Should().BeEmpty();
    }

    [Theory]
    [InlineData("fashion-mnist", 1.0)]
    [InlineData("mnist", 1.0)]
    [InlineData("hcsc-200ep", 0.875)]
    public void Small_grey_images_are_evaluated_whole_and_imagenet_with_its_centre_crop(string name, double fraction)
    {
        using var error = new StringWriter();
        var options = HcscOptionsLoader.Load(Presets.All[name], null, new Dictionary<string, string?>(), error);
        options!.Augmentation.EvalCropFraction.Should().Be(fraction);
    }

    [Fact]
    public void A_key_of_an_earlier_version_names_the_key_that_replaced_it()
    {
        using var error = new StringWriter();
        var options = HcscOptionsLoader.Load(Presets.All["synthetic-quick"], null, new Dictionary<string, string?> { ["Model:Temperature"] = "0.1" }, error);
        options.Should().BeNull();
        error.ToString().Should().Contain("'Model:Temperature' is now 'Objective:Temperature'");
    }
}
