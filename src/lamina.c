/* The public interface: thin wrappers over the internal types. */
#include "lamina.h"

#include "config.h"
#include "error.h"
#include "model.h"
#include "session.h"

struct lamina_model {
    lm_model m;
};
struct lamina_session {
    lm_session s;
};

const char *lamina_version(void)
{
    return PACKAGE_VERSION;
}

const char *lamina_last_error(void)
{
    return lm_last_error();
}

lamina_model *lamina_model_load(const char *path)
{
    return (lamina_model *)lm_model_load(path);
}

void lamina_model_free(lamina_model *model)
{
    lm_model_free(model ? &model->m : NULL);
}

int32_t lamina_n_vocab(const lamina_model *model)
{
    return (int32_t)model->m.hp.n_vocab;
}

int lamina_token_is_eog(const lamina_model *model, int32_t id)
{
    return lm_tokenizer_is_eog(model->m.tokenizer, id);
}

int lamina_tokenize(const lamina_model *model, const char *text, int32_t **ids, size_t *n_ids)
{
    size_t len = 0;
    while (text[len])
        len++;
    return lm_tokenize(model->m.tokenizer, text, len, true, true, ids, n_ids);
}

int lamina_token_to_piece(const lamina_model *model, int32_t id, char *buf, size_t cap)
{
    return lm_token_to_piece(model->m.tokenizer, id, false, buf, cap);
}

lamina_session *lamina_session_new(const lamina_model *model, int n_ctx)
{
    return (lamina_session *)lm_session_new(&model->m, n_ctx, 512);
}

void lamina_session_free(lamina_session *session)
{
    lm_session_free(session ? &session->s : NULL);
}

int lamina_eval(lamina_session *session, const int32_t *ids, int n, float *logits)
{
    return lm_session_eval(&session->s, ids, n, false, logits);
}

void lamina_rewind(lamina_session *session, int pos)
{
    lm_session_rewind(&session->s, pos);
}
