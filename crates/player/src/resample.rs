//! The variable-rate resampler: source rate to output rate, times the
//! drift-correcting playback rate.
//!
//! [`RateResampler`] wraps rubato's `SincFixedOut` (band-limited sinc
//! interpolation, fixed output chunk, ratio adjustable between chunks) behind
//! interleaved input and output. Drift correction changes the ratio by a few
//! hundred ppm; the waveform stays continuous because only the speed at which
//! the interpolation point advances changes, never its phase. Frames are
//! never dropped or duplicated.
//!
//! Its position bookkeeping is exact: after [`RateResampler::reset`] the
//! `j`-th output frame is the source signal at `first_input + LEAD + Σ step`,
//! where the sum runs over the steps of the frames up to and including it; this mirrors
//! rubato's own `f64` index, so the renderer always knows which source frame
//! it is emitting.

use rubato::{
    Resampler, SincFixedOut, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Sinc length (taps) of the interpolator.
const SINC_LEN: usize = 128;

/// How far the playback rate may move from 1.0 either way (1%): far beyond the
/// ±500 ppm a slew controller uses, so its requests are never cut short.
pub const MAX_RATE_DEVIATION: f64 = 0.01;

/// The source position (in input frames, relative to the first input frame
/// after a reset) just before the first output frame: output frame `j` then
/// carries position `LEAD + Σ_{i ≤ j} step_i`. Rubato starts its index at
/// `-SINC_LEN/2`, the interpolation window is centred `SINC_LEN/2 - 1` later,
/// and each output frame first advances the index by its step (measured by
/// the test below for equal, falling and rising rates).
pub(crate) const LEAD: f64 = -1.0;

/// Resamples interleaved `f32` from a source rate to an output rate, with a
/// playback rate applied on top.
pub(crate) struct RateResampler {
    inner: SincFixedOut<f32>,
    channels: usize,
    /// Source frames per output frame at rate 1.0 (`source_rate / output_rate`).
    base_step: f64,
    rate: f64,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
}

impl RateResampler {
    /// A resampler from `source_rate` to `output_rate` producing `chunk` frames per call.
    pub(crate) fn new(
        source_rate: u32,
        output_rate: u32,
        channels: usize,
        chunk: usize,
    ) -> Result<Self, String> {
        let ratio = f64::from(output_rate) / f64::from(source_rate);
        let window = WindowFunction::BlackmanHarris2;
        let params = SincInterpolationParameters {
            sinc_len: SINC_LEN,
            f_cutoff: rubato::calculate_cutoff(SINC_LEN, window),
            interpolation: SincInterpolationType::Linear,
            oversampling_factor: 256,
            window,
        };
        let inner = SincFixedOut::new(
            ratio,
            1.0 + 2.0 * MAX_RATE_DEVIATION,
            params,
            chunk,
            channels,
        )
        .map_err(|err| err.to_string())?;
        let input = inner.input_buffer_allocate(true);
        let output = inner.output_buffer_allocate(true);
        Ok(Self {
            inner,
            channels,
            base_step: 1.0 / ratio,
            rate: 1.0,
            input,
            output,
        })
    }

    /// Source frames consumed per output frame at the current rate.
    pub(crate) fn step(&self) -> f64 {
        // Mirrors rubato: it advances by 1 / (original_ratio * relative_ratio).
        self.base_step * self.rate
    }

    /// Sets the playback rate (1.0003 plays 300 ppm fast), clamped to
    /// ±[`MAX_RATE_DEVIATION`]; takes effect from the next chunk. Returns the rate applied.
    pub(crate) fn set_rate(&mut self, rate: f64) -> f64 {
        let rate = if rate.is_finite() {
            rate.clamp(1.0 - MAX_RATE_DEVIATION, 1.0 + MAX_RATE_DEVIATION)
        } else {
            1.0
        };
        if rate != self.rate
            && self
                .inner
                .set_resample_ratio_relative(1.0 / rate, false)
                .is_ok()
        {
            self.rate = rate;
        }
        self.rate
    }

    /// Input frames the next [`RateResampler::process`] call consumes.
    pub(crate) fn input_needed(&self) -> usize {
        self.inner.input_frames_next()
    }

    /// Forgets all history (the next input is a fresh start) and returns to rate 1.0.
    pub(crate) fn reset(&mut self) {
        self.inner.reset();
        self.rate = 1.0;
    }

    /// Consumes exactly [`RateResampler::input_needed`] interleaved frames from
    /// `input` and appends one chunk of interleaved output to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        let needed = self.input_needed();
        if input.len() < needed * self.channels {
            return Err(format!(
                "resampler needs {needed} frames, got {}",
                input.len() / self.channels
            ));
        }
        for (c, planar) in self.input.iter_mut().enumerate() {
            planar.resize(needed, 0.0);
            for (dst, frame) in planar.iter_mut().zip(input.chunks_exact(self.channels)) {
                *dst = frame[c];
            }
        }
        let (_, produced) = self
            .inner
            .process_into_buffer(&self.input, &mut self.output, None)
            .map_err(|err| err.to_string())?;
        out.reserve(produced * self.channels);
        for i in 0..produced {
            for planar in &self.output {
                out.push(planar[i]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Where (in output frames, fractional) an impulse at input frame `at` comes out.
    fn impulse_position(source_rate: u32, output_rate: u32, at: usize) -> f64 {
        let mut r = RateResampler::new(source_rate, output_rate, 1, 256).unwrap();
        // A Gaussian pulse: smooth enough that the centroid of its samples is its centre.
        let signal: Vec<f32> = (0..20_000)
            .map(|i| (-((i as f64 - at as f64) / 6.0).powi(2) / 2.0).exp() as f32)
            .collect();
        let mut out = Vec::new();
        let mut fed = 0;
        while out.len() < 4_000 {
            let n = r.input_needed();
            r.process(&signal[fed..fed + n], &mut out).unwrap();
            fed += n;
        }
        // Centroid of the main lobe around the peak.
        let (peak, _) = out
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let (num, den) = (peak - 40..peak + 41)
            .map(|i| (i as f64 * f64::from(out[i]), f64::from(out[i])))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        num / den
    }

    #[test]
    fn output_frame_maps_to_source_position_with_lead() {
        for (src, dst) in [(44_100, 44_100), (48_000, 44_100), (22_050, 44_100)] {
            let at = 1000;
            let pos = impulse_position(src, dst, at);
            let step = f64::from(src) / f64::from(dst);
            // Output frame j carries source position LEAD + (j + 1) * step.
            let expected = (at as f64 - LEAD) / step - 1.0;
            eprintln!("{src}->{dst}: impulse at output {pos}, expected {expected}");
            assert!(
                (pos - expected).abs() < 0.05,
                "{src}->{dst}: {pos} vs {expected}"
            );
        }
    }
}
