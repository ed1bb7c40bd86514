/* Image-folder datasets: "imagenet:DIR[:LABELS]" and "folder:DIR" (the
 * options every kind shares are in src/io/dataset.c). Layouts are documented
 * in docs/imagenet.md.
 *
 * File order and labels follow torchvision's ImageFolder exactly, so an index
 * here is the same image as the same index in a PyTorch run:
 *   classes = sorted names of the sub-directories of DIR (label = position);
 *   files   = for each class, os.walk(class_dir, followlinks=True) sorted by
 *             directory path, file names sorted within a directory, keeping
 *             names with ImageFolder's extensions (case-insensitive).
 * Sorting is bytewise (Python's code-point order for UTF-8 names). */
#include "io_internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WALK_MAX_DEPTH 32
#define MAX_LABEL 1000000

/* torchvision.datasets.folder.IMG_EXTENSIONS: listed even when we cannot
 * decode them, so indices stay aligned with PyTorch; decoding such a file
 * then fails (or is skipped) with a clear message. */
static const char *const k_img_ext[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp",
                                        ".pgm", ".tif",  ".tiff", ".webp"};

static int has_image_ext(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof k_img_ext / sizeof k_img_ext[0]; i++) {
        size_t e = strlen(k_img_ext[i]);
        if (n >= e) {
            size_t k = 0;
            while (k < e && tolower((unsigned char)name[n - e + k]) == k_img_ext[i][k]) k++;
            if (k == e) return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ file lists */

typedef struct file_item {
    char *path;     /* full path */
    size_t rootlen; /* length of its directory part (without the '/') */
    int label;
} file_item;

typedef struct file_list {
    file_item *v;
    size_t n, cap;
} file_list;

static void list_free(file_list *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static cwba_status list_push(file_list *l, const char *root, const char *name, int label, cwba_error *err)
{
    if (l->n >= (size_t)INT32_MAX - 1) return cwba_fail(err, CWBA_E_ARG, "%s: too many images", root);
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        file_item *v = realloc(l->v, cap * sizeof *v);
        if (!v) return cwba_fail(err, CWBA_E_NOMEM, "out of memory listing %s", root);
        l->v = v;
        l->cap = cap;
    }
    size_t rl = strlen(root), nl = strlen(name);
    char *p = malloc(rl + nl + 2);
    if (!p) return cwba_fail(err, CWBA_E_NOMEM, "out of memory listing %s", root);
    memcpy(p, root, rl);
    p[rl] = '/';
    memcpy(p + rl + 1, name, nl + 1);
    l->v[l->n++] = (file_item){p, rl, label};
    return CWBA_OK;
}

/* Bytewise, like Python's sort of (root, fname) pairs. */
static int item_cmp(const void *a, const void *b)
{
    const file_item *x = a, *y = b;
    size_t m = x->rootlen < y->rootlen ? x->rootlen : y->rootlen;
    int c = memcmp(x->path, y->path, m);
    if (c) return c;
    if (x->rootlen != y->rootlen) return x->rootlen < y->rootlen ? -1 : 1;
    return strcmp(x->path + x->rootlen + 1, y->path + y->rootlen + 1);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Names in dir (no "." / ".."), split into sub-directories and other entries
 * (stat follows symlinks, as os.walk(followlinks=True) and is_dir() do). */
static cwba_status read_dir(const char *dir, char ***dirs, size_t *ndirs, char ***files, size_t *nfiles,
                            cwba_error *err)
{
    *dirs = *files = NULL;
    *ndirs = *nfiles = 0;
    DIR *d = opendir(dir);
    if (!d) return cwba_fail(err, CWBA_E_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    size_t capd = 0, capf = 0;
    cwba_status st = CWBA_OK;
    struct dirent *e;
    while (!st && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        size_t need = strlen(dir) + strlen(e->d_name) + 2;
        char *full = malloc(need);
        if (!full) {
            st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
            break;
        }
        snprintf(full, need, "%s/%s", dir, e->d_name);
        struct stat sb;
        int is_dir = stat(full, &sb) == 0 && S_ISDIR(sb.st_mode);
        free(full);
        char ***arr = is_dir ? dirs : files;
        size_t *n = is_dir ? ndirs : nfiles, *cap = is_dir ? &capd : &capf;
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 64;
            char **a = realloc(*arr, nc * sizeof *a);
            if (!a) {
                st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
                break;
            }
            *arr = a;
            *cap = nc;
        }
        if (!((*arr)[*n] = strdup(e->d_name))) {
            st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (!st) {
        if (*ndirs) qsort(*dirs, *ndirs, sizeof **dirs, str_cmp);
        if (*nfiles) qsort(*files, *nfiles, sizeof **files, str_cmp);
    }
    return st;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* Every image file under dir (recursively), labelled `label`. */
static cwba_status walk(const char *dir, int label, int depth, file_list *out, cwba_error *err)
{
    if (depth > WALK_MAX_DEPTH)
        return cwba_fail(err, CWBA_E_ARG, "%s: directories nested deeper than %d (a symlink loop?)", dir,
                         WALK_MAX_DEPTH);
    char **dirs, **files;
    size_t nd, nf;
    cwba_status st = read_dir(dir, &dirs, &nd, &files, &nf, err);
    for (size_t i = 0; !st && i < nf; i++)
        if (has_image_ext(files[i])) st = list_push(out, dir, files[i], label, err);
    for (size_t i = 0; !st && i < nd; i++) {
        size_t need = strlen(dir) + strlen(dirs[i]) + 2;
        char *sub = malloc(need);
        if (!sub) {
            st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
            break;
        }
        snprintf(sub, need, "%s/%s", dir, dirs[i]);
        st = walk(sub, label, depth + 1, out, err);
        free(sub);
    }
    free_names(dirs, nd);
    free_names(files, nf);
    return st;
}

/* ------------------------------------------------------------ label files */

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int parse_label(const char *s, int *out)
{
    long v;
    if (!cwba_parse_int(s, &v) || v < 0 || v > MAX_LABEL) return 0;
    *out = (int)v;
    return 1;
}

/* wnid -> index in the sorted class list. */
static int wnid_index(char **classes, size_t n, const char *w)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(classes[mid], w);
        if (c == 0) return (int)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* Splits a labels file into lines of up to two fields ("a b", "a,b ...", "a").
 * Fields point into buf (modified in place). */
typedef struct label_row {
    char *file; /* NULL for a bare label */
    char *label;
    int line;
} label_row;

static cwba_status read_label_rows(const char *path, uint8_t **bufp, label_row **rows, size_t *nrows,
                                   cwba_error *err)
{
    size_t len;
    cwba_status st = cwba_file_read_all(path, (size_t)1 << 28, bufp, &len, err);
    if (st) return st;
    char *buf = realloc(*bufp, len + 1);
    if (!buf) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    *bufp = (uint8_t *)buf;
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) return cwba_fail(err, CWBA_E_FORMAT, "%s: labels file contains NUL bytes", path);
    size_t cap = 0;
    *rows = NULL;
    *nrows = 0;
    int lineno = 0;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *cr = strchr(line, '\r');
        if (cr) *cr = '\0';
        char *a = line;
        while (*a == ' ' || *a == '\t') a++;
        /* Kaggle's LOC_val_solution.csv: "ImageId,PredictionString" header,
         * rows "<id>,<wnid> x y x y ..." */
        if (*a && *a != '#' && strncmp(a, "ImageId,", 8) != 0) {
            char *sep = a + strcspn(a, " \t,");
            char *b = NULL;
            if (*sep) {
                *sep = '\0';
                b = sep + 1;
                while (*b == ' ' || *b == '\t') b++;
                b[strcspn(b, " \t,")] = '\0';
            }
            if (*nrows == cap) {
                cap = cap ? 2 * cap : 1024;
                label_row *r = realloc(*rows, cap * sizeof *r);
                if (!r) return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
                *rows = r;
            }
            (*rows)[(*nrows)++] = b && *b ? (label_row){a, b, lineno} : (label_row){NULL, a, lineno};
        }
        line = nl ? nl + 1 : NULL;
    }
    if (*nrows == 0) return cwba_fail(err, CWBA_E_FORMAT, "%s: no labels in the file", path);
    for (size_t i = 1; i < *nrows; i++)
        if (((*rows)[i].file == NULL) != ((*rows)[0].file == NULL))
            return cwba_fail(err, CWBA_E_FORMAT, "%s:%d: mixes \"label\" and \"file label\" lines", path,
                             (*rows)[i].line);
    return CWBA_OK;
}

/* A label token: an integer, or a wnid numbered by its sorted position. */
static int row_label(int numeric, char **wnids, size_t nw, const char *tok)
{
    int lab = -1;
    if (numeric) return parse_label(tok, &lab) ? lab : -1;
    if (!isalpha((unsigned char)tok[0])) return -1;
    return wnid_index(wnids, nw, tok);
}

/* Flat DIR + labels file. Bare labels apply to the sorted image files of DIR;
 * "file label" rows name their files (relative to DIR, extension optional as
 * in Kaggle's csv), which are then taken in sorted order. Labels are integers
 * used as given, or wnids (n01440764...) numbered in sorted order. */
static cwba_status open_flat(const char *dir, const char *labels, file_list *out, cwba_error *err)
{
    uint8_t *buf = NULL;
    label_row *rows = NULL;
    size_t nrows = 0;
    char **wnids = NULL;
    size_t nw = 0;
    cwba_status st = read_label_rows(labels, &buf, &rows, &nrows, err);
    if (st) goto done;
    {
        const char *base = strrchr(labels, '/');
        base = base ? base + 1 : labels;
        if (!rows[0].file && strncmp(base, "ILSVRC2012_validation_ground_truth", 34) == 0) {
            st = cwba_fail(err, CWBA_E_UNSUPPORTED,
                           "%s: the devkit's ground truth holds ILSVRC2012_IDs (1..1000), whose class order is "
                           "not torchvision's; use class sub-folders or a \"file label\" list "
                           "(see docs/imagenet.md)", labels);
            goto done;
        }
    }
    /* Integer or wnid labels (decided by the first row, then enforced): a
     * class name must start with a letter (n01440764), anything else is read
     * as a number. */
    int numeric = !isalpha((unsigned char)rows[0].label[0]);
    if (!numeric) {
        wnids = malloc(nrows * sizeof *wnids);
        if (!wnids) {
            st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < nrows; i++) wnids[i] = rows[i].label;
        qsort(wnids, nrows, sizeof *wnids, str_cmp);
        for (size_t i = 0; i < nrows; i++)
            if (nw == 0 || strcmp(wnids[nw - 1], wnids[i]) != 0) wnids[nw++] = wnids[i];
    }
    if (!rows[0].file) {
        /* One label per image, in the sorted order of DIR's image files. */
        char **dirs, **files;
        size_t nd, nf;
        st = read_dir(dir, &dirs, &nd, &files, &nf, err);
        if (st) goto done;
        for (size_t i = 0; !st && i < nf; i++)
            if (has_image_ext(files[i])) st = list_push(out, dir, files[i], -1, err);
        free_names(dirs, nd);
        free_names(files, nf);
        if (!st && out->n != nrows)
            st = cwba_fail(err, CWBA_E_FORMAT, "%s has %zu labels but %s has %zu images", labels, nrows, dir,
                           out->n);
        for (size_t i = 0; !st && i < nrows; i++) {
            int lab = row_label(numeric, wnids, nw, rows[i].label);
            if (lab < 0)
                st = cwba_fail(err, CWBA_E_FORMAT, "%s:%d: bad label \"%s\"", labels, rows[i].line, rows[i].label);
            else
                out->v[i].label = lab;
        }
        goto done;
    }
    for (size_t i = 0; !st && i < nrows; i++) {
        int lab = row_label(numeric, wnids, nw, rows[i].label);
        if (lab < 0) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s:%d: bad label \"%s\"", labels, rows[i].line, rows[i].label);
            break;
        }
        const char *f = rows[i].file;
        if (f[0] == '/' || strstr(f, "..")) {
            st = cwba_fail(err, CWBA_E_FORMAT, "%s:%d: file name \"%s\" must be relative to %s", labels,
                           rows[i].line, f, dir);
            break;
        }
        st = list_push(out, dir, f, lab, err);
        if (st) break;
        /* Kaggle lists ids without the extension. */
        file_item *it = &out->v[out->n - 1];
        if (!has_image_ext(f) && !is_file(it->path)) {
            static const char *const ext[] = {".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG"};
            for (size_t k = 0; k < sizeof ext / sizeof ext[0]; k++) {
                size_t need = strlen(it->path) + strlen(ext[k]) + 1;
                char *p = malloc(need);
                if (!p) {
                    st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
                    break;
                }
                snprintf(p, need, "%s%s", it->path, ext[k]);
                if (is_file(p)) {
                    free(it->path);
                    it->path = p;
                    break;
                }
                free(p);
            }
        }
        if (!st && !is_file(it->path))
            st = cwba_fail(err, CWBA_E_IO, "%s:%d: %s does not exist", labels, rows[i].line, it->path);
        /* The directory part may include sub-folders named in the file. */
        if (!st) it->rootlen = (size_t)(strrchr(it->path, '/') - it->path);
    }
    if (!st && out->n > 0) qsort(out->v, out->n, sizeof *out->v, item_cmp);
    for (size_t i = 1; !st && i < out->n; i++)
        if (strcmp(out->v[i - 1].path, out->v[i].path) == 0)
            st = cwba_fail(err, CWBA_E_FORMAT, "%s: %s is listed twice", labels, out->v[i].path);
done:
    free(wnids);
    free(rows);
    free(buf);
    return st;
}

/* Label files looked for in a flat DIR, in this order. */
static const char *const k_label_files[] = {"val.txt", "labels.txt", "ground_truth.txt", "LOC_val_solution.csv",
                                            "ILSVRC2012_validation_ground_truth.txt"};

/* ---------------------------------------------------------- the dataset */

typedef struct image_set {
    file_list files;
    int skip_unreadable;
    atomic_uchar *bad; /* (count) 1 where an image failed to decode */
} image_set;

static cwba_status image_get(const cwba_dataset *d, int index, float *out, int *label, cwba_error *err)
{
    const image_set *s = d->impl;
    const file_item *it = &s->files.v[index];
    cwba_status st = cwba_image_preprocess_file(it->path, &d->pp, out, err);
    if (st && st != CWBA_E_NOMEM && st != CWBA_E_ARG) atomic_store(&s->bad[index], 1);
    *label = it->label;
    return st;
}

static void image_destroy(cwba_dataset *d)
{
    image_set *s = d->impl;
    if (!s) return;
    list_free(&s->files);
    free(s->bad);
    free(s);
    d->impl = NULL;
}

/* The hooks behind the generic views of src/io/dataset.c (skipping
 * unreadable images, file names). */
static void image_set_skip(cwba_dataset *d) { ((image_set *)d->impl)->skip_unreadable = 1; }

static int image_skips(const cwba_dataset *d) { return ((const image_set *)d->impl)->skip_unreadable; }

static int image_is_bad(const cwba_dataset *d, int index)
{
    return atomic_load(&((const image_set *)d->impl)->bad[index]) != 0;
}

static const char *image_path(const cwba_dataset *d, int index)
{
    return ((const image_set *)d->impl)->files.v[index].path;
}

#define IMAGE_OPS(name)                                                                   \
    {                                                                                    \
        .kind = name, .get = image_get, .destroy = image_destroy,                        \
        .set_skip_unreadable = image_set_skip, .skips_unreadable = image_skips,          \
        .is_unreadable = image_is_bad, .item_path = image_path                           \
    }
static const cwba_dataset_ops imagenet_ops = IMAGE_OPS("imagenet");
static const cwba_dataset_ops folder_ops = IMAGE_OPS("folder");

static cwba_status finish_open(const cwba_dataset_ops *ops, file_list *files, int has_labels,
                               const cwba_preprocess *pp, const char *dir, cwba_dataset **out, cwba_error *err)
{
    if (files->n == 0) {
        list_free(files);
        return cwba_fail(err, CWBA_E_IO, "%s: no images found (extensions: .jpg .jpeg .png ...)", dir);
    }
    cwba_preprocess p = pp ? *pp : cwba_preprocess_imagenet();
    if (p.resize < 0 || p.resize > 16384) {
        list_free(files);
        return cwba_fail(err, CWBA_E_ARG, "%s: resize %d outside 0..16384", dir, p.resize);
    }
    cwba_dataset *d = calloc(1, sizeof *d);
    image_set *s = calloc(1, sizeof *s);
    atomic_uchar *bad = calloc(files->n, sizeof *bad);
    if (!d || !s || !bad) {
        free(d);
        free(s);
        free(bad);
        list_free(files);
        return cwba_fail(err, CWBA_E_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < files->n; i++) atomic_init(&bad[i], 0);
    s->files = *files;
    s->bad = bad;
    memset(files, 0, sizeof *files);
    d->ops = ops;
    d->impl = s;
    d->pp = p;
    d->count = (int)s->files.n;
    d->has_labels = has_labels;
    *out = d;
    return CWBA_OK;
}

/* args: "DIR" or "DIR:LABELS" (split at the last ':' when that names a file). */
cwba_status cwba_dataset_open_imagenet(const char *args, const cwba_preprocess *pp, cwba_dataset **out,
                                       cwba_error *err)
{
    *out = NULL;
    if (!args || !*args)
        return cwba_fail(err, CWBA_E_ARG, "imagenet: give a directory, e.g. imagenet:/data/imagenet/val");
    char dir[4096], labels[4200] = "";
    if (strlen(args) >= sizeof dir) return cwba_fail(err, CWBA_E_ARG, "imagenet: path too long");
    snprintf(dir, sizeof dir, "%s", args);
    char *c = strrchr(dir, ':');
    if (c && !is_dir(dir) && is_file(c + 1)) {
        snprintf(labels, sizeof labels, "%s", c + 1);
        *c = '\0';
    }
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dir[--dl] = '\0';
    if (!is_dir(dir)) return cwba_fail(err, CWBA_E_IO, "imagenet: %s is not a directory", dir);
    file_list files = {0};
    cwba_status st;
    if (labels[0]) {
        st = open_flat(dir, labels, &files, err);
    } else {
        char **dirs, **names;
        size_t nd, nf;
        st = read_dir(dir, &dirs, &nd, &names, &nf, err);
        if (st) return st;
        if (nd > 0) {
            /* ImageFolder: one class per sub-directory, in sorted order. */
            if (nd > MAX_LABEL) st = cwba_fail(err, CWBA_E_ARG, "%s: too many class folders", dir);
            for (size_t i = 0; !st && i < nd; i++) {
                size_t before = files.n;
                size_t need = dl + strlen(dirs[i]) + 2;
                char *sub = malloc(need);
                if (!sub) {
                    st = cwba_fail(err, CWBA_E_NOMEM, "out of memory");
                    break;
                }
                snprintf(sub, need, "%s/%s", dir, dirs[i]);
                st = walk(sub, (int)i, 0, &files, err);
                if (!st && files.n > before)
                    qsort(files.v + before, files.n - before, sizeof *files.v, item_cmp);
                if (!st && files.n == before)
                    st = cwba_fail(err, CWBA_E_IO, "%s: class folder has no images (torchvision's "
                                   "ImageFolder refuses this too)", sub);
                free(sub);
            }
        } else {
            for (size_t k = 0; k < sizeof k_label_files / sizeof k_label_files[0] && !labels[0]; k++) {
                snprintf(labels, sizeof labels, "%s/%s", dir, k_label_files[k]);
                if (!is_file(labels)) labels[0] = '\0';
            }
            if (!labels[0])
                st = cwba_fail(err, CWBA_E_IO,
                               "imagenet: %s has no class sub-folders and no labels file (val.txt, labels.txt, "
                               "ground_truth.txt, LOC_val_solution.csv); use folder:%s for unlabelled images",
                               dir, dir);
            else
                st = open_flat(dir, labels, &files, err);
        }
        free_names(dirs, nd);
        free_names(names, nf);
    }
    if (st) {
        list_free(&files);
        return st;
    }
    return finish_open(&imagenet_ops, &files, 1, pp, dir, out, err);
}

cwba_status cwba_dataset_open_folder(const char *args, const cwba_preprocess *pp, cwba_dataset **out,
                                     cwba_error *err)
{
    *out = NULL;
    if (!args || !*args) return cwba_fail(err, CWBA_E_ARG, "folder: give a directory, e.g. folder:./images");
    char dir[4096];
    if (strlen(args) >= sizeof dir) return cwba_fail(err, CWBA_E_ARG, "folder: path too long");
    snprintf(dir, sizeof dir, "%s", args);
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dir[--dl] = '\0';
    if (!is_dir(dir)) return cwba_fail(err, CWBA_E_IO, "folder: %s is not a directory", dir);
    file_list files = {0};
    cwba_status st = walk(dir, -1, 0, &files, err);
    if (!st && files.n > 0) qsort(files.v, files.n, sizeof *files.v, item_cmp);
    if (st) {
        list_free(&files);
        return st;
    }
    return finish_open(&folder_ops, &files, 0, pp, dir, out, err);
}
